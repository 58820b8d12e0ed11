"""What every benchmark script shares: where results go and how they are written (atomically)."""

from __future__ import annotations

import json
from pathlib import Path

from ddnn_deploy.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def save_result(stem: str, data: dict, *, indent: int = 2) -> Path:
    """Write ``results/STEM.json`` (temporary name, then rename) and say where it went."""
    out = RESULTS / f"{stem}.json"
    write_text_atomic(out, json.dumps(data, indent=indent) + "\n")
    print(f"wrote {out}")
    return out
