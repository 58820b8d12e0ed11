"""Reading an export directory for the runtime side: manifest.json, checked against the files' sha256."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import read_versioned_json, sha256_file
from ..errors import DDNNError, UsageError

MANIFEST_FORMAT = "ddnn-deploy.export"


class ArtifactsError(DDNNError):
    exit_code = 3


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if root.resolve() not in path.parents:
        raise ArtifactsError(f"manifest path {relative!r} points outside {root}; refusing")
    return path


def load_manifest(folder: str | Path, *, verify: bool = True) -> dict[str, Any]:
    """The manifest with absolute ``file`` paths added; refuses files whose sha256 no longer match."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"artifacts directory {root} does not exist; create it with `ddnn-deploy export`")
    path = root / "manifest.json"
    if not path.is_file():
        raise ArtifactsError(f"{root} has no manifest.json; create it with `ddnn-deploy export --out {root}`")
    manifest = read_versioned_json(path, fmt=MANIFEST_FORMAT, version=1, what="ddnn-deploy export manifest",
                                   fix=f"re-export with `ddnn-deploy export --out {root} --force`",
                                   error=ArtifactsError)
    for artifact in manifest.get("artifacts", []):
        files = [(artifact["path"], artifact["sha256"])]
        if isinstance(artifact.get("data"), dict):
            files.append((artifact["data"]["path"], artifact["data"]["sha256"]))
        for relative, expected in files:
            file = _inside(root, relative)
            if not file.is_file():
                raise ArtifactsError(f"{relative} is listed in {path} but missing; re-export")
            if verify and sha256_file(file) != expected:
                raise ArtifactsError(f"{relative} no longer matches the sha256 in {path}: the file was changed "
                                     "after export; refusing to use it (re-export)")
        artifact["file"] = str(_inside(root, artifact["path"]))
    return manifest
