"""A wheel is a complete install: built from the project's files, installed into a fresh virtual
environment, it finds its demo checkpoint and calibration sample inside its own site-packages and
runs the demo's first steps from a directory outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package name -> repository folder: package-dir in pyproject.toml maps them, build_py copies the files
DATA_PACKAGES = {"ddnn_deploy._bundled_models": "models", "ddnn_deploy._bundled_calibration": "calibration"}
SHIPPED = {
    "ddnn_deploy/_bundled_models/fmnist-resnet20-ddnn.pt": "models/fmnist-resnet20-ddnn.pt",
    "ddnn_deploy/_bundled_calibration/fashion-mnist-512.npz": "calibration/fashion-mnist-512.npz",
}
# what building needs (and all it may see: a copy, so that the checkout gets no build/ or *.egg-info)
BUILD_INPUTS = ["pyproject.toml", "README.md", "MANIFEST.in", "ddnn_deploy", "models", "calibration"]


def _setuptools_config() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def test_the_wheel_lists_every_package_and_maps_the_data_folders():
    """Mapped packages rule out auto-discovery, so the list is explicit: a new sub-package must be added."""
    from setuptools import find_packages

    config = _setuptools_config()
    code = set(find_packages(str(ROOT), include=["ddnn_deploy", "ddnn_deploy.*"]))
    missing = sorted(code - set(config["packages"]))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml, or the wheel lacks them"
    assert set(config["packages"]) == code | set(DATA_PACKAGES)
    assert config["package-dir"] == DATA_PACKAGES
    for wheel_path, repo_path in SHIPPED.items():
        package, name = wheel_path.rsplit("/", 1)
        assert name in config["package-data"][package.replace("/", ".")] and (ROOT / repo_path).is_file()


def _copy_build_inputs(dest: Path) -> Path:
    dest.mkdir()
    for name in BUILD_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(cmd: list, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_the_demo_from_its_own_files(tmp_path, fashion_mnist_dir):
    pytest.importorskip("build")
    src = _copy_build_inputs(tmp_path / "src")
    dist = tmp_path / "dist"
    # sdist, then the wheel built from that sdist: both routes must carry the data. No isolation: the
    # project venv's setuptools builds it (no network needed).
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src], cwd=tmp_path)
    (wheel,) = dist.glob("ddnn_deploy-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for wheel_path, repo_path in SHIPPED.items():
            assert zf.read(wheel_path) == (ROOT / repo_path).read_bytes(), wheel_path
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert not any(n.startswith(("models/", "calibration/", "tests/")) for n in names)
    for requirement in ("numpy", "click", "pydantic", "rich", "tqdm"):
        assert f"Requires-Dist: {requirement}" in metadata

    # A fresh venv. Installing torch, onnx and onnxruntime into it would take minutes and need the
    # network, so it sees the project venv's installed packages through a .pth file instead, and the
    # wheel goes in with --no-deps. A .pth line only appends a folder to sys.path: the .pth files in
    # that folder (such as the editable install's finder hook for this checkout) are NOT processed, so
    # the checkout cannot leak in; the test checks that below (ddnn_deploy.__file__, the finder).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            "-q",
            wheel,
        ],
        cwd=tmp_path,
    )
    site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp_path).stdout.strip()
    )
    shared = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "zz_project_venv_packages.pth").write_text("".join(f"{p}\n" for p in sorted(shared)))

    probe = _run(
        [
            python,
            "-c",
            (
                "import json, sys\n"
                "import ddnn_deploy, ddnn_deploy.resources as r\n"
                "from ddnn_deploy.quantize.reader import DEFAULT_SAMPLES\n"
                "print(json.dumps({'package': ddnn_deploy.__file__, 'ckpt': str(r.demo_checkpoint()),\n"
                "                  'sample': str(r.calibration_sample('fashion-mnist')),\n"
                "                  'default': str(DEFAULT_SAMPLES.get('fashion-mnist')),\n"
                "                  'editable': [m for m in sys.modules if 'editable' in m]}))\n"
            ),
        ],
        cwd=tmp_path,
    )
    found = json.loads(probe.stdout)
    assert found["editable"] == [], found
    for key in ("package", "ckpt", "sample", "default"):
        path = Path(found[key])
        assert path.is_relative_to(site / "ddnn_deploy") and not path.is_relative_to(ROOT), (key, path)
    assert Path(found["ckpt"]).name == "fmnist-resnet20-ddnn.pt" and found["sample"] == found["default"]

    # The demo's first steps through the installed console script, from outside the checkout.
    out = tmp_path / "demo-out"
    result = _run(
        [venv / "bin" / "ddnn-deploy", "demo", "--steps", "info,eval", "--limit", 200, "--out", out], cwd=tmp_path
    )
    shown = [line for line in result.stdout.splitlines() if line.startswith("$ ddnn-deploy ")]
    assert len(shown) == 2 and shown[0].endswith("ddnn_deploy/_bundled_models/fmnist-resnet20-ddnn.pt"), shown
    assert "30.82 M" in result.stdout and result.stdout.count("│    200 │") == 3, result.stdout
