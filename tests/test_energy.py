"""Energy per inference: RAPL on a synthetic powercap tree (with a counter that wraps), tegrastats' input rail
through a fake tegrastats, and 'unavailable, because' where nothing can be read (this machine has no powercap)."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest

from ddnn_deploy.measure import energy
from ddnn_deploy.measure.energy import EnergyReading, RaplMeter, Unavailable


def _zone(root: Path, name: str, value: int, wrap: int = 262143328850) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text(f"{value}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")
    (zone / "name").write_text("package-0\n")
    return zone


def test_rapl_sums_packages_skips_sub_zones_and_survives_a_wrap(tmp_path):
    root = tmp_path / "powercap"
    p0 = _zone(root, "intel-rapl:0", 1_000_000, wrap=10_000_000)
    p1 = _zone(root, "intel-rapl:1", 5_000_000)
    _zone(root, "intel-rapl:0:0", 123)  # the cores inside package 0: not counted twice
    meter = RaplMeter(root)
    assert len(meter.zones) == 2
    before = meter.read()
    (p0 / "energy_uj").write_text("500000\n")  # wrapped: 1.0 J -> 10.0 J (wrap) -> 0.5 J: 9.5 J used
    (p1 / "energy_uj").write_text("7000000\n")  # 2 J
    assert meter.joules(before, meter.read()) == pytest.approx(11.5)


def test_a_reading_around_a_loop_gives_joules_per_image_and_watts(tmp_path, monkeypatch):
    root = tmp_path / "powercap"
    zone = _zone(root, "intel-rapl:0", 0)
    monkeypatch.setattr(energy, "TegrastatsMeter", _no_jetson)
    reading = EnergyReading("onnxruntime", "cpu", root)
    reading.start()
    (zone / "energy_uj").write_text("4000000\n")  # 4 J during the loop
    time.sleep(0.05)
    reading.stop()
    result = reading.result(calls=100, batch=8)
    assert result["source"] == "rapl" and result["joules_per_call"] == pytest.approx(0.04)
    assert result["joules_per_image"] == pytest.approx(0.005) and result["mean_watts"] > 0


def _no_jetson():
    raise Unavailable("tegrastats is not on PATH (not a Jetson)")


def test_unavailable_says_why_and_is_never_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(energy, "TegrastatsMeter", _no_jetson)
    missing = EnergyReading("onnxruntime", "cpu", tmp_path / "no-powercap").result(10, 1)
    assert missing == {"unavailable": f"no RAPL here ({tmp_path / 'no-powercap'} is missing)"}
    root = tmp_path / "powercap"
    zone = _zone(root, "intel-rapl:0", 1)
    os.chmod(zone / "energy_uj", 0)
    if os.geteuid() != 0:  # root reads it anyway
        assert "root only" in EnergyReading("onnxruntime", "cpu", root).result(10, 1)["unavailable"]
    gpu = EnergyReading("tensorrt", "cpu", root).result(10, 1)
    assert "unavailable" in gpu and ("NVML" in gpu["unavailable"] or "energy counter" in gpu["unavailable"])


def test_on_a_jetson_the_input_rail_gives_the_energy(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    line = (
        "11-26-2026 01:00:00 RAM 2505/7620MB CPU [2%@729,1%@729] GR3D_FREQ 0%@[305] "
        "VDD_IN 5000mW/5000mW VDD_CPU_GPU_CV 486mW/486mW VDD_SOC 1298mW/1298mW"
    )
    script = bin_dir / "tegrastats"
    script.write_text(
        "#!/bin/sh\n"
        + textwrap.dedent(f"""\
        while true; do echo '{line}'; sleep 0.02; done
    """)
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    reading = EnergyReading("tensorrt", "cpu")
    reading.start()
    time.sleep(0.4)
    reading.stop()
    result = reading.result(calls=10, batch=1)
    assert result["source"] == "tegrastats" and result["mean_watts"] == pytest.approx(5.0, rel=0.05)


def test_bench_rows_carry_the_energy_or_why_not(tiny_artifacts):
    from ddnn_deploy.formats.profiles import get_profile
    from ddnn_deploy.measure.sweep import bench

    quick = get_profile("x86-cpu").model_copy(
        update=dict(
            batch_sizes=(1,),
            threads=1,
            warmup_iters=1,
            warmup_seconds=0.0,
            min_iters=5,
            min_seconds=0.0,
            precisions=("fp32",),
            optional_backends=(),
        )  # fmt: skip
    )
    results = bench(tiny_artifacts, device=quick, depths=[8], progress=False)
    energy_field = results.rows[0].energy
    if Path("/sys/class/powercap").is_dir():
        assert energy_field.get("source") == "rapl" or "unavailable" in energy_field
    else:
        assert energy_field == {"unavailable": "no RAPL here (/sys/class/powercap is missing)"}
