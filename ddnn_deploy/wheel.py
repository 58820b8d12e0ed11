"""A wheel of the ddnn-deploy running here, for ``bench --host ... --install``.

It is made from the imported package itself, not rebuilt from a source tree: the same bytes run on the device as
here, whether this install is a checkout, an editable install or a wheel, and no build back-end, compiler or
network is needed (Python 3.8 included). The bundled demo files (``_bundled_*``: the demo checkpoint and the
calibration sample) stay out: the device runs the runtime half only. The metadata (dependencies included) is this
install's own, so ``pip install`` of the file also works on a device that has network access.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

from . import __version__

NAME = "ddnn_deploy"
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _metadata() -> str:
    """This install's METADATA (name, version, dependencies), or a minimal one where none is recorded."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        found = distribution("ddnn-deploy")
        text = found.read_text("METADATA") or found.read_text("PKG-INFO")  # a wheel's, or a checkout's egg-info
    except (ImportError, PackageNotFoundError):
        text = None
    if not text or f"\nVersion: {__version__}\n" not in f"\n{text}":
        text = f"Metadata-Version: 2.1\nName: ddnn-deploy\nVersion: {__version__}\n"
    return text


def _package_files(root: Path) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if not path.is_file() or path.is_symlink() or path.suffix in SKIP_SUFFIXES:
            continue
        if SKIP_DIRS & set(rel.parts) or any(part.startswith("_bundled_") for part in rel.parts):
            continue
        files.append((rel.as_posix(), path))
    return files


def runtime_wheel() -> tuple[str, bytes]:
    """(file name, bytes) of a py3-none-any wheel of the package imported here."""
    root = Path(__file__).resolve().parent
    info = f"{NAME}-{__version__}.dist-info"
    entries = [(name, path.read_bytes()) for name, path in _package_files(root)]
    entries.append((f"{info}/METADATA", _metadata().encode()))
    entries.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: ddnn-deploy\nRoot-Is-Purelib: true\n"
                                      b"Tag: py3-none-any\n"))  # fmt: skip
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries) + f"{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for name, data in entries:
            member = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible: same code, same bytes
            member.external_attr = 0o644 << 16
            member.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(member, data)
    return f"{NAME}-{__version__}-py3-none-any.whl", buffer.getvalue()
