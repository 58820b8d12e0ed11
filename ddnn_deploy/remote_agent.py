"""The device side of ``bench --host``: small commands run over SSH as ``python -m ddnn_deploy.remote_agent CMD``.

Torch-free and Python 3.8-compatible (the runtime half). Each prints one JSON line on stdout, or one ``error:``
line on stderr and exits non-zero:

- ``version``: ``{"ddnn_deploy", "python"}``, once the command line's dependencies have imported.
- ``have NAME``: the artifacts folder ``~/.cache/ddnn-deploy/artifacts/NAME`` (made if missing) and the sha256 of
  the files named on stdin (a JSON list) that are already there.
- ``receive NAME``: a tar stream on stdin; only plain file names, only regular files, each written under a
  temporary name and renamed. Then the folder's manifest is read, which checks every listed file's sha256:
  nothing runs on a folder that does not match.
- ``workdir``: a fresh temporary folder for one run; ``put DIR NAME`` writes stdin to DIR/NAME; ``cat DIR NAME``
  prints DIR/NAME; ``cleanup DIR`` removes a folder ``workdir`` made.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
WORK_PREFIX = "ddnn-remote-"


def cache_root() -> Path:
    return Path(os.environ.get("DDNN_REMOTE_CACHE", Path.home() / ".cache" / "ddnn-deploy" / "artifacts"))


def _name(text: str) -> str:
    if not SAFE_NAME.match(text) or text in (".", ".."):
        raise ValueError(f"not a plain file or folder name: {text!r}")
    return text


def _sha256(path: Path) -> str:
    from .atomic import sha256_file

    return sha256_file(path)


def have(name: str) -> dict:
    folder = cache_root() / _name(name)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = json.load(sys.stdin)
    found = {}
    for file in wanted:
        path = folder / _name(file)
        if path.is_file() and not path.is_symlink():
            found[file] = _sha256(path)
    return {"dir": str(folder), "sha256": found}


def receive(name: str) -> dict:
    from .atomic import atomic_path
    from .formats.manifest import read_manifest

    folder = cache_root() / _name(name)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as stream:
        for member in stream:
            if not member.isfile():
                raise ValueError(f"refusing tar entry {member.name!r}: not a regular file")
            target = folder / _name(member.name)
            source = stream.extractfile(member)
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out)
            written.append(member.name)
    manifest = read_manifest(folder)  # every listed file against its sha256, before anything runs
    return {"dir": str(folder), "written": written, "artifacts": len(manifest.artifacts)}


def workdir() -> dict:
    return {"dir": tempfile.mkdtemp(prefix=WORK_PREFIX)}


def _in_workdir(folder: str) -> Path:
    path = Path(folder).resolve()
    if not path.name.startswith(WORK_PREFIX) or path.parent != Path(tempfile.gettempdir()).resolve():
        raise ValueError(f"{folder} is not a folder this agent made")
    return path


def main(argv: list) -> int:
    try:
        command, args = argv[0], argv[1:]
        if command == "version":
            from . import __version__
            from . import cli as _cli  # noqa: F401 - the bench's own dependencies: a missing one is named here

            result = {"ddnn_deploy": __version__, "python": platform.python_version()}
        elif command == "have":
            result = have(args[0])
        elif command == "receive":
            result = receive(args[0])
        elif command == "workdir":
            result = workdir()
        elif command == "put":
            target = _in_workdir(args[0]) / _name(args[1])
            target.write_bytes(sys.stdin.buffer.read())
            result = {"written": str(target)}
        elif command == "cat":
            sys.stdout.buffer.write((_in_workdir(args[0]) / _name(args[1])).read_bytes())
            return 0
        elif command == "cleanup":
            shutil.rmtree(_in_workdir(args[0]), ignore_errors=True)
            result = {"removed": args[0]}
        else:
            raise ValueError(f"unknown command {command!r}")
    except Exception as exc:  # noqa: BLE001 - the caller turns this line into its own one-line error
        print(f"error: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
