"""The fleet file (``fleet.toml``): the devices ``fleet bench`` measures and ``fleet plan`` deploys to, and the
record ``fleet bench`` writes (``OUT/fleet.json``) of what ran where::

    [devices.orin]
    host = "nvidia@orin.local"   # or "local": this machine, no SSH
    device = "jetson"            # a device profile (built in, or from the profiles file)
    budget_ms = 8.0
    python = "/usr/bin/python3"  # optional, the remote interpreter with ddnn-deploy
    port = 22                    # optional
    identity = "~/.ssh/id_ed25519"  # optional
    timeout_s = 3600             # optional, per device
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

from pydantic import ConfigDict, Field

from ..atomic import write_text_atomic
from ..errors import UsageError
from ._schema import Schema, read_json_file, validate

FORMAT = "ddnn-deploy.fleet"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class FleetDevice(Schema):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    host: str
    device: str
    budget_ms: float = Field(gt=0)
    python: str = "python3"
    port: int = Field(default=22, ge=1, le=65535)
    identity: Optional[str] = None
    timeout_s: float = Field(default=3600.0, gt=0)


class Fleet(Schema):
    model_config = ConfigDict(extra="forbid", frozen=True)

    devices: Dict[str, FleetDevice]


def read_fleet(path: str | Path) -> Fleet:
    from .profiles import _load_toml

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--fleet {path} does not exist")
    data = _load_toml(path)
    fleet = validate(Fleet, data, where=str(path), error=UsageError)
    if not fleet.devices:
        raise UsageError(f"{path}: names no devices; add [devices.NAME] tables")
    bad = [name for name in fleet.devices if not NAME.match(name)]
    if bad:
        raise UsageError(f"{path}: device names are letters, digits, '-' and '_' (they name files): {bad[0]!r}")
    return fleet


class FleetEntry(Schema):
    name: str
    host: str
    device: str
    budget_ms: float
    results: Optional[str] = None  # the results file, in the fleet folder
    error: Optional[str] = None
    seconds: float = 0.0


class FleetRecord(Schema):
    format: Literal["ddnn-deploy.fleet"] = FORMAT
    version: int = 1
    artifacts: str
    checkpoint_sha256: str
    devices: List[FleetEntry]


def write_record(folder: Path, record: FleetRecord) -> Path:
    path = folder / "fleet.json"
    write_text_atomic(path, record.model_dump_json(indent=2) + "\n")
    return path


def read_record(folder: str | Path) -> FleetRecord:
    path = Path(folder) / "fleet.json"
    if not path.is_file():
        raise UsageError(f"{folder} holds no fleet.json: run `ddnn-deploy fleet bench --out {folder}` first")
    data: Any = read_json_file(
        path, fmt=FORMAT, version=1, what="fleet record", fix="run `ddnn-deploy fleet bench` again", error=UsageError
    )
    return validate(FleetRecord, data, where=str(path), error=UsageError)
