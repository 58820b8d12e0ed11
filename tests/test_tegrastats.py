"""tegrastats lines recorded on real boards (tests/fixtures/jetson/*-tegrastats.txt, each with the place it was
published on its first line) parsed, and the sampler run for real against a fake `tegrastats` on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddnn_deploy.measure import tegrastats
from ddnn_deploy.measure.tegrastats import TegrastatsSampler, parse_tegrastats, summarize_tegrastats

FIXTURES = Path(__file__).parent / "fixtures" / "jetson"
RECORDED = sorted(FIXTURES.glob("*-tegrastats.txt"))


def lines(name: str) -> list[str]:
    source, _, text = (FIXTURES / name).read_text().partition("\n")
    assert source.startswith("# source: "), name
    return [line for line in text.splitlines() if line.strip()]


def test_nano_jetpack4_as_root():
    sample = parse_tegrastats(lines("nano-tegrastats.txt")[0])
    assert "time" not in sample  # L4T 32 prints no timestamp
    assert sample["ram"] == {"used_mb": 1464, "total_mb": 3964}
    assert sample["swap"] == {"used_mb": 0, "total_mb": 1982, "cached_mb": 0}
    assert [core["load_pct"] for core in sample["cpus"]] == [90, 16, 0, 9]
    assert {core["mhz"] for core in sample["cpus"]} == {1479}
    assert sample["emc"] == {"load_pct": 6, "mhz": 1600}
    assert sample["gpu"] == {"load_pct": 7, "mhz": 768, "gpc_mhz": [768]}
    assert sample["temps"] == {"PLL": 28.0, "CPU": 32.0, "PMIC": 50.0, "GPU": 28.5, "AO": 37.0, "thermal": 30.25}
    assert sample["power"] == {
        "POM_5V_IN": {"cur_mw": 2746, "avg_mw": 2911},
        "POM_5V_GPU": {"cur_mw": 159, "avg_mw": 161},
        "POM_5V_CPU": {"cur_mw": 796, "avg_mw": 989},
    }


def test_xavier_without_root_rails_named_like_sensors():
    sample = parse_tegrastats(lines("xavier-tegrastats.txt")[0])
    assert sample["emc"] == {"load_pct": 0, "mhz": None}  # no clocks without root
    assert sample["gpu"] == {"load_pct": 0, "mhz": None, "gpc_mhz": []}
    assert (sample["temps"]["GPU"], sample["temps"]["CPU"]) == (30.5, 31.5)  # GPU@30.5C is a temperature ...
    assert sample["power"]["GPU"] == {"cur_mw": 463, "avg_mw": 463}  # ... GPU 463/463 a rail
    assert sorted(sample["power"]) == ["CPU", "CV", "GPU", "SOC", "SYS5V", "VDDRQ"]
    assert len(sample["cpus"]) == 8 and sample["swap"]["cached_mb"] == 23


def test_cores_that_are_off():
    cores = parse_tegrastats(lines("tx2-tegrastats.txt")[0])["cpus"]
    assert [core["online"] for core in cores] == [True, False, False, True, True, True]
    assert cores[0] == {"online": True, "load_pct": 3, "mhz": 345}
    assert "power" not in parse_tegrastats(lines("tx2-tegrastats.txt")[0])


def test_agx_orin_jetpack51_one_field_per_gpc_and_unreadable_sensors():
    sample = parse_tegrastats(lines("agx-orin-jp51-tegrastats.txt")[0])
    assert sample["time"] == "04-24-2023 00:01:24"
    assert sample["gpu"] == {"load_pct": 0, "mhz": 0, "gpc_mhz": [0, 0]}  # GR3D_FREQ 0%@0 GR3D2_FREQ 0%@0
    assert "GPU" not in sample["temps"] and "CV0" not in sample["temps"]  # GPU@-256C: not readable, dropped
    assert sample["temps"]["CPU"] == 42.593
    assert sample["power"]["VDD_GPU_SOC"] == {"cur_mw": 2399, "avg_mw": 2399}
    assert sample["power"]["VIN_SYS_5V0"] == {"cur_mw": 4032, "avg_mw": 4032}


@pytest.mark.parametrize("name", ["agx-orin-jp5-gpc-tegrastats.txt", "agx-orin-jp6-tegrastats.txt"])
def test_agx_orin_gpc_array(name):
    sample = parse_tegrastats(lines(name)[0])
    assert sample["gpu"] == {"load_pct": 0, "mhz": 0, "gpc_mhz": [0, 0]}  # GR3D_FREQ 0%@[0,0]
    assert sample["emc"]["mhz"] == 2133
    assert len(sample["cpus"]) == 12


def test_agx_orin_jetpack6_engines_are_not_rails_or_clocks():
    sample = parse_tegrastats(lines("agx-orin-jp6-tegrastats.txt")[0])
    assert [core["mhz"] for core in sample["cpus"]][:4] == [2188, 2112, 2035, 2201]
    assert sample["temps"] == {"cpu": 52.562, "soc2": 48.437, "soc0": 49.093, "tj": 52.562, "soc1": 49.656}
    assert sorted(sample["power"]) == ["VDD_CPU_CV", "VDD_GPU_SOC", "VIN_SYS_5V0"]  # NVENC 79%@166: an engine


def test_jetpack7_current_average_and_maximum():
    agx = parse_tegrastats(lines("agx-orin-jp7-tegrastats.txt")[0])
    assert agx["gpu"] == {"load_pct": 12, "mhz": 1300, "gpc_mhz": [1300, 1300]}
    assert agx["power"]["VDD_CPU_CV"] == {"cur_mw": 3268, "avg_mw": 3268, "max_mw": 3268}
    nano = parse_tegrastats(lines("orin-nano-jp7-tegrastats.txt")[1])
    assert nano["gpu"] == {"load_pct": 12, "mhz": 306, "gpc_mhz": [306]}  # GR3D_FREQ 12%@[306]
    assert nano["emc"] == {"load_pct": 5, "mhz": 665}
    assert nano["temps"]["cpu"] == 47.562  # cpu@47.562C/48C: the current value, not the maximum
    assert nano["power"]["VDD_IN"] == {"cur_mw": 4093, "avg_mw": 4463, "max_mw": 4832}
    assert nano["power"]["VDD_CPU_GPU_CV"] == {"cur_mw": 802, "avg_mw": 1019, "max_mw": 1236}
    assert "swap" not in nano  # this board has no swap and prints none


def test_summary_over_recorded_lines():
    summary = summarize_tegrastats(lines("orin-nano-jp7-tegrastats.txt"))
    assert summary["samples"] == 4
    assert summary["gpu_load_mean_pct"] == 5.0 and summary["gpu_load_max_pct"] == 12
    assert summary["power_mean_mw"] == {"VDD_IN": 4072.8, "VDD_CPU_GPU_CV": 800.5, "VDD_SOC": 1233.5}
    assert summary["emc_mhz_seen"] == [665, 2133] and summary["gpu_mhz_seen"] == [305, 306]
    assert summary["temp_max_c"]["cpu"] == 48.0 and summary["temp_max_c"]["soc1"] == 47.0
    assert summary["ram_used_max_mb"] == 1803
    empty = summarize_tegrastats(["", "garbage"])
    assert empty["samples"] == 0 and empty["gpu_load_mean_pct"] is None and empty["power_mean_mw"] == {}


@pytest.mark.parametrize("path", RECORDED, ids=lambda path: path.name)
def test_every_cut_of_a_recorded_line_parses(path):
    line = lines(path.name)[0]
    for end in range(0, len(line) + 1, 7):
        assert isinstance(parse_tegrastats(line[:end]), dict)
        assert isinstance(parse_tegrastats(line[end:]), dict)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("RAMSWPCU[]%@,/0123456789mWC .-_GR3DEFQoffx()kBlb\t")))
def test_odd_input_never_raises(text):
    assert isinstance(parse_tegrastats(text), dict)


def test_not_a_string():
    assert parse_tegrastats(None) == {} and parse_tegrastats(b"RAM 1/2MB") == {}


# --- the sampler, against a fake tegrastats -------------------------------------------------------------------


def _fake_tegrastats(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / "tegrastats"
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)


@pytest.fixture
def fake_path(tmp_path, monkeypatch):
    """A bin folder first on PATH, and the recorded Orin Nano lines for the fake to print."""
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("FAKE_LINES", str(FIXTURES / "orin-nano-jp7-tegrastats.txt"))
    monkeypatch.setenv("FAKE_ARGS", str(tmp_path / "args"))
    monkeypatch.setenv("FAKE_PID", str(tmp_path / "pid"))
    return bin_dir


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


PRINT_THEN_RUN = """\
    echo $$ > "$FAKE_PID"
    echo "$@" > "$FAKE_ARGS"
    grep -v '^#' "$FAKE_LINES"
    exec sleep 600
"""


def test_sampler_reads_lines_while_it_runs_and_stops_the_child(fake_path, tmp_path):
    _fake_tegrastats(fake_path, PRINT_THEN_RUN)
    with TegrastatsSampler(interval_ms=50) as sampler:
        assert _wait(lambda: sampler.snapshot()["samples"] == 4)  # read before stop: the thread is live
        assert sampler.summary is None
    started = time.monotonic()
    summary = sampler.stop()  # a second stop returns the same summary
    assert time.monotonic() - started < 1.0
    assert (tmp_path / "args").read_text().split() == ["--interval", "50"]
    assert summary["samples"] == 4 and summary["stopped_early"] is False and summary["interval_ms"] == 50
    assert summary["gpu_mhz_seen"] == [305, 306] and summary["power_mean_mw"]["VDD_IN"] == 4072.8
    assert sampler._proc is not None and sampler._proc.poll() is not None


def test_sampler_when_tegrastats_exits_by_itself(fake_path):
    _fake_tegrastats(fake_path, 'grep -v "^#" "$FAKE_LINES" | head -n 2\nexit 3\n')
    sampler = TegrastatsSampler(interval_ms=1000).start()
    assert _wait(lambda: sampler._proc.poll() is not None)
    summary = sampler.stop()
    assert summary["stopped_early"] is True and summary["samples"] == 2


def test_sampler_kills_a_child_that_ignores_sigterm(fake_path):
    _fake_tegrastats(fake_path, "trap '' TERM\ngrep -v '^#' \"$FAKE_LINES\"\nwhile :; do sleep 0.05; done\n")
    sampler = TegrastatsSampler(interval_ms=100, stop_timeout_s=0.3).start()
    assert _wait(lambda: sampler.snapshot()["samples"] == 4)
    started = time.monotonic()
    summary = sampler.stop()
    assert time.monotonic() - started < 3.0
    assert summary["samples"] == 4 and sampler._proc.poll() is not None


def test_without_tegrastats_nothing_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: not a Jetson
    with TegrastatsSampler() as sampler:
        assert sampler.available is False
    assert sampler.summary == {"available": False} and sampler.snapshot() == {"available": False}
    assert sampler._proc is None


def test_child_options_reach_the_child(fake_path, tmp_path, monkeypatch):
    marker = str(tmp_path / "preexec-ran")

    def preexec() -> None:  # runs in the child between fork and exec, as children.child_options' does
        os.close(os.open(marker, os.O_CREAT | os.O_WRONLY, 0o644))

    monkeypatch.setattr(tegrastats, "child_options", lambda: {"preexec_fn": preexec})
    _fake_tegrastats(fake_path, PRINT_THEN_RUN)
    with TegrastatsSampler(interval_ms=50):
        pass
    assert Path(marker).exists()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # a zombie nobody reaped yet is dead too


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="dies-with-parent is Linux only (PR_SET_PDEATHSIG)")
def test_tegrastats_dies_with_a_killed_parent(fake_path, tmp_path):
    _fake_tegrastats(fake_path, PRINT_THEN_RUN)
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, time\n"
            "from ddnn_deploy.measure.tegrastats import TegrastatsSampler\n"
            "TegrastatsSampler(interval_ms=50).start()\n"
            f"while not os.path.exists({str(tmp_path / 'args')!r}): time.sleep(0.02)\n"
            "os._exit(0)  # no stop(): like a kill -9 or an OOM kill\n",
        ],
        cwd=Path(__file__).resolve().parents[1],
    )
    assert parent.wait(timeout=30) == 0
    pid = int((tmp_path / "pid").read_text())  # written before the args the parent waited for
    assert _wait(lambda: _gone(pid)), f"tegrastats (pid {pid}) outlived its parent"


def test_bench_on_a_jetson_records_what_the_board_did(fake_path, tiny_artifacts, tmp_path, monkeypatch):
    """bench on a (faked) Jetson runs tegrastats beside the sweep and files its summary with the environment."""
    from ddnn_deploy.formats.profiles import get_profile
    from ddnn_deploy.measure import environment
    from ddnn_deploy.measure.sweep import bench

    _fake_tegrastats(fake_path, PRINT_THEN_RUN)
    monkeypatch.setattr(environment, "jetson_state", lambda: {"model": "NVIDIA Jetson Orin Nano (fake)"})
    quick = get_profile("x86-cpu").model_copy(
        update={
            "batch_sizes": (1,),
            "threads": 1,
            "warmup_iters": 1,
            "min_iters": 3,
            "min_seconds": 0.0,
            "precisions": ("fp32",),
            "optional_backends": (),
        }
    )
    results = bench(tiny_artifacts, device=quick, depths=[8], progress=False)
    summary = results.device["environment"]["tegrastats"]
    assert summary["available"] is True and summary["samples"] >= 1 and summary["temp_max_c"]
    # each row's energy comes from the board's input rail, read by a tegrastats of its own around the timed loop
    # (the last one started wrote the args file)
    assert results.rows[0].energy["source"] == "tegrastats" and results.rows[0].energy["mean_watts"] > 0
    assert (tmp_path / "args").read_text().split()[0] == "--interval"
    assert _wait(lambda: _gone(int((tmp_path / "pid").read_text())))  # stopped with the sweep
