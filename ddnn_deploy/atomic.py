"""File helpers: atomic writes (temporary name beside the target, then rename), content hashes, the
writers' lock, and the clean-up of temporary entries that a killed run left behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import BusyError, UsageError

try:  # POSIX; elsewhere runs are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_readable(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create owner-only entries; give them the usual umask-based modes instead."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success only. The temporary
    name carries this process's id (``.NAME.tmp-PID-xxxx``): if the process is killed, ``remove_stale_temps``
    can tell it is an orphan."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path: Path | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_name(target.name, "tmp"), dir=target.parent)
        tmp_path = Path(tmp)
        os.close(fd)
        yield tmp_path
        make_readable(tmp_path)
        os.replace(tmp_path, target)
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lock_path(target: str | Path) -> Path:
    """Where the writers of ``target`` (a folder or a file) take their lock: ``.NAME.lock`` beside it, or
    ``TARGET/.ddnn.lock`` inside a folder whose parent cannot be written (only in-place writers run there)."""
    target = Path(target)
    beside = target.parent / f".{target.name}.lock"
    if target.is_dir() and not beside.exists() and not os.access(target.parent if str(target.parent) else ".", os.W_OK):
        return target / ".ddnn.lock"
    return beside


@contextlib.contextmanager
def writer_lock(target: str | Path, what: str | None = None) -> Iterator[None]:
    """Hold an exclusive OS lock (``flock``) for writing ``target``; another holder -> ``BusyError`` at once.

    The kernel releases the lock when the process exits or is killed, so a crashed run never blocks the next
    one. The lock file holds the owner's pid and is removed on release; a run that locked a file another run
    has just removed sees the inode change and reports the folder busy instead of going on beside it."""
    target = Path(target)
    path = lock_path(target)

    def busy(pid: str = "") -> BusyError:
        who = f"another ddnn-deploy run (pid {pid})" if pid else "another ddnn-deploy run"
        return BusyError(f"{who} is writing {what or target}; wait for it to finish, then run this again")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UsageError(f"cannot write to {path.parent}: {exc.strerror or exc}; choose a writable place") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise busy(os.pread(fd, 32, 0).decode(errors="replace").strip()) from None
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    raise busy()
            except FileNotFoundError:
                raise busy() from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # while still holding the lock
    finally:
        os.close(fd)


# The temporary names ddnn-deploy gives its own work, with the pid of the process that made them.
_TEMP = re.compile(r"^\.(?P<stem>.+)\.(tmp|old|probe|calibrate|bench)-(?P<pid>\d+)(-.*)?$")


def temp_name(stem: str, kind: str) -> str:
    """``.STEM.KIND-PID-xxxx``: a temporary entry that ``remove_stale_temps`` can tell is ours and whose
    owner it can check."""
    return f".{stem}.{kind}-{os.getpid()}-"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of this tool's temporary entries (see ``temp_name``)."""
    return _TEMP.match(name) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | Path, stem: str | None = None) -> list[Path]:
    """Remove this tool's temporary entries in ``folder`` (for ``stem`` only, if given) whose owner process
    is gone: what a killed run left behind. Returns what was removed."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or (stem is not None and match["stem"] != stem) or _alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed
