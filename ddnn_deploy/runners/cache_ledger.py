"""Engine caches kept trustworthy: onnxruntime's TensorRT provider's and OpenVINO's compiled models.

onnxruntime deserializes whatever engine files sit in ``trt_engine_cache_path`` (native code, chosen by file
name). ddnn-deploy therefore keeps a ledger, ``ddnn-engines.json``, of every file the provider wrote there under
its runs (name, size, sha256), and refuses to start the provider on a folder holding a file that is not in the
ledger or has changed since: such a file is of unknown origin. Deleting the file (or the folder) rebuilds it.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import is_temp_name, sha256_file, write_text_atomic
from ..errors import EngineMismatchError

LEDGER = "ddnn-engines.json"
FORMAT = "ddnn-deploy.ort-engine-cache"


def _files(cache: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(cache.iterdir()) if p.name != LEDGER and not is_temp_name(p.name)}


def read_ledger(cache: Path) -> dict[str, dict[str, object]]:
    """name -> {"size", "sha256"}; empty when there is no ledger, and an error when it is not one of ours."""
    path = cache / LEDGER
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        files = data["files"] if isinstance(data, dict) and data.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, RecursionError):
        files = None
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise EngineMismatchError(f"{path} is not a ddnn-deploy engine ledger; delete {cache} to rebuild its engines")
    return files


def check_cache(cache: Path) -> None:
    """Refuse a cache folder with files this tool did not record (or that changed since it did)."""
    if not cache.exists():
        return
    if not cache.is_dir() or cache.is_symlink():
        raise EngineMismatchError(f"{cache} must be a folder (not a file or a link) for onnxruntime's engine cache")
    known = read_ledger(cache)
    for name, path in _files(cache).items():
        entry = known.get(name)
        if entry is None:
            problem = "was not written by ddnn-deploy"
        elif path.is_symlink() or not path.is_file():
            problem = "is not a regular file"
        elif entry.get("size") != path.stat().st_size or entry.get("sha256") != sha256_file(path):
            problem = "changed since ddnn-deploy recorded it"
        else:
            continue
        raise EngineMismatchError(
            f"{path} {problem}; the back-end would load it as native code: delete it (or {cache}) to rebuild"
        )


def record_cache(cache: Path) -> None:
    """Record every file now in the cache folder (after a run of the provider that owns it)."""
    files = {
        name: {"size": path.stat().st_size, "sha256": sha256_file(path)}
        for name, path in _files(cache).items()
        if path.is_file() and not path.is_symlink()
    }
    write_text_atomic(cache / LEDGER, json.dumps({"format": FORMAT, "files": files}, indent=1))
