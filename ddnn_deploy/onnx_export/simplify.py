"""onnxsim in a child process with a timeout: onnxsim can segfault, which no try/except catches.

``simplify_in_child(src, dst, timeout)`` returns ``(ok, reason)``; on any failure the caller keeps
the unsimplified graph and records the reason. Run as ``python -m <this module> SRC DST``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..children import child_options

CHILD_COMMAND = (sys.executable, "-m", __name__)  # this module, whatever the package is called


def simplify_in_child(
    src: Path, dst: Path, timeout: float = 300.0, command: tuple[str, ...] = CHILD_COMMAND
) -> tuple[bool, str]:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        result = subprocess.run(
            [*command, str(src), str(dst)], capture_output=True, text=True, timeout=timeout, env=env, **child_options()
        )
    except subprocess.TimeoutExpired:
        return False, f"onnxsim timed out after {timeout:.0f} s"
    if result.returncode != 0:
        lines = [line for line in (result.stderr or "").strip().splitlines() if line.strip()]
        detail = lines[-1][:200] if lines else "no message"
        if result.returncode < 0:
            detail = f"killed by signal {-result.returncode} ({detail})"
        return False, f"onnxsim failed: {detail}"
    if not dst.is_file():
        return False, "onnxsim wrote no output"
    return True, "ok"


def _main(src: str, dst: str) -> int:
    from ..errors import optional_import

    onnx = optional_import("onnx")
    onnxsim = optional_import("onnxsim")

    model = onnx.load(src)
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        print("onnxsim could not validate the simplified model", file=sys.stderr)
        return 2
    simplified.ClearField("metadata_props")
    simplified.metadata_props.extend(model.metadata_props)
    onnx.save(simplified, dst)
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
