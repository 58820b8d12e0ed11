"""The README's Python API section runs as written, and the top-level API stays light and typed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_api_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section holds exactly one python block"
    return blocks[0]


@pytest.mark.slow
def test_readme_python_api_runs_as_written(tmp_path, fashion_mnist_dir):
    result = subprocess.run(
        [sys.executable, "-c", readme_api_block()], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^depth (8|20) (fp32|int8): \d+\.\d{3} ms, top-1 9\d\.\d\d%$", result.stdout, flags=re.M), (
        result.stdout
    )
    manifest = (tmp_path / "artifacts" / "api" / "manifest.json").read_text()
    assert '"precision": "int8"' in manifest and '"method": "percentile"' in manifest
    assert (tmp_path / "artifacts" / "api" / "results.png").is_file()


def test_import_is_light_and_every_public_name_resolves():
    code = (
        "import sys, ddnn_deploy\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'onnx', 'pydantic') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in ddnn_deploy.__all__ if getattr(ddnn_deploy, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert callable(ddnn_deploy.export) and callable(ddnn_deploy.bench) and callable(ddnn_deploy.train)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_wrong_argument_types_are_one_line_usage_errors(tmp_path):
    import ddnn_deploy as dd

    with pytest.raises(dd.UsageError, match="config must be a QuantConfig, not dict"):
        dd.calibrate(tmp_path, {"method": "minmax"})
    with pytest.raises(dd.UsageError, match="device must be a profile name or a DeviceProfile, not int"):
        dd.bench(tmp_path, device=8)
    with pytest.raises(dd.UsageError, match="depths must be a string like"):
        dd.parse_depths(dd.arch_spec("resnet50"), 3.5)
    with pytest.raises(dd.UsageError, match="must be a positive number of milliseconds"):
        dd.pick_depth([], budget_ms="fast")
    with pytest.raises(dd.UsageError, match="--epochs must be an integer >= 0"):
        dd.TrainConfig(epochs="ten")
