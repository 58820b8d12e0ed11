"""Jetson state from the outputs of `jetson_clocks --show` and `nvpmodel -q` as real boards print them, and the
environment warnings. Outputs recorded on real boards, each with the place it was published on its first line, are
in tests/fixtures/jetson/ (Nano on L4T 32, Xavier NX on L4T 32, AGX Orin on JetPack 5.1 and 7.2, Orin Nano on
JetPack 7.2); the inline texts below are examples in the same formats, not recordings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ddnn_deploy.measure import environment
from ddnn_deploy.measure.environment import jetson_state, parse_jetson_clocks, parse_nvpmodel, warnings_for

FIXTURES = Path(__file__).parent / "fixtures" / "jetson"


def recorded(name: str) -> str:
    """A recorded output, without its first line (where it was published)."""
    source, _, text = (FIXTURES / name).read_text().partition("\n")
    assert source.startswith("# source: "), name
    return text


NANO_DEFAULT = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
CPU Cluster Switching: Disabled
cpu0: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=825600 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=1036800 IdleStates: WFI=1 c7=1
cpu2: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=921600 IdleStates: WFI=1 c7=1
cpu3: Online=1 Governor=schedutil MinFreq=102000 MaxFreq=1479000 CurrentFreq=710400 IdleStates: WFI=1 c7=1
GPU MinFreq=76800000 MaxFreq=921600000 CurrentFreq=76800000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=0
Fan: PWM=0
NV Power Mode: MAXN
"""

# after `sudo jetson_clocks`: CPUs and GPU pinned, but EMC still shows MinFreq < MaxFreq (FreqOverride=1)
NANO_LOCKED = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-3
cpu0: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu2: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu3: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
GPU MinFreq=921600000 MaxFreq=921600000 CurrentFreq=921600000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: PWM=255
NV Power Mode: MAXN
"""

# 5W mode locked: two CPUs offline (their lines still print, with Online=0)
NANO_5W_LOCKED = """SOC family:tegra210  Machine:NVIDIA Jetson Nano Developer Kit
Online CPUs: 0-1
cpu0: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=921600 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu2: Online=0 Governor=schedutil MinFreq=102000 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
cpu3: Online=0 Governor=schedutil MinFreq=102000 MaxFreq=921600 CurrentFreq=921600 IdleStates: WFI=0 c7=0
GPU MinFreq=614400000 MaxFreq=614400000 CurrentFreq=614400000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
NV Power Mode: 5W
"""

# Orin Nano (L4T 36, "Super" mode) after jetson_clocks: no IdleStates column, GPU TPC and fan lines
ORIN_NANO_LOCKED = """SOC family:tegra234  Machine:NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super
Online CPUs: 0-5
cpu0: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000
cpu1: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000
cpu2: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000
cpu3: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000
cpu4: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000
cpu5: Online=1 Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000
GPU MinFreq=1020000000 MaxFreq=1020000000 CurrentFreq=1020000000
Active GPU TPCs: 8
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
FAN Dynamic Speed Control=kernel hwmon0_pwm1=88
NV Power Mode: MAXN_SUPER
"""

# AGX Orin at its defaults: CPUs scale, GPU scales, EMC not overridden
AGX_ORIN_DEFAULT = """SOC family:tegra234  Machine:Jetson AGX Orin
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1113600 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=2133000000 FreqOverride=0
NV Power Mode: MAXN
"""


@pytest.mark.parametrize(
    "text, cpu, gpu, emc, locked, mode",
    [
        (NANO_DEFAULT, False, False, False, False, "MAXN"),
        (NANO_LOCKED, True, True, True, True, "MAXN"),  # the old parser called this board unlocked (EMC min < max)
        (NANO_5W_LOCKED, True, True, True, True, "5W"),  # offline CPUs do not count
        (ORIN_NANO_LOCKED, True, True, True, True, "MAXN_SUPER"),
        (AGX_ORIN_DEFAULT, False, False, False, False, "MAXN"),
    ],
)
def test_jetson_clocks_show_from_real_boards(text, cpu, gpu, emc, locked, mode):
    state = parse_jetson_clocks(text)
    assert (state["cpu_locked"], state["gpu_locked"], state["emc_locked"]) == (cpu, gpu, emc)
    assert state["locked"] is locked and state["power_mode"] == mode


def test_no_root_means_unknown_never_unlocked():
    assert parse_jetson_clocks(None) == {"locked": None}
    assert parse_jetson_clocks("") == {"locked": None}
    assert warnings_for({"jetson": {"clocks_locked": None}}) == []
    assert any("jetson_clocks" in w for w in warnings_for({"jetson": {"clocks_locked": False}}))


def test_nvpmodel_query():
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert parse_nvpmodel("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n2\n") == {"name": "15W", "id": 2}
    assert parse_nvpmodel(None) == {}


def test_every_recorded_output_says_where_it_was_published():
    names = sorted(path.name for path in FIXTURES.iterdir())
    assert len(names) >= 15
    for name in names:
        assert (FIXTURES / name).read_text().startswith("# source: "), name


@pytest.mark.parametrize(
    "name, cpu, gpu, emc, locked, mode, gpu_mhz, emc_mhz",
    [
        ("nano-jetson_clocks-default.txt", False, False, False, False, "MAXN", 230, 1600),
        # the case: after `jetson_clocks` EMC MinFreq stays below MaxFreq, FreqOverride=1 says it is pinned
        ("nano-jetson_clocks-locked.txt", True, True, True, True, "MAXN", 921, 1600),
        # DLA/PVA lines (MinFreq=0) are not CPUs; cpu10/cpu11 sort between cpu1 and cpu2
        ("agx-orin-jp51-jetson_clocks-default.txt", False, False, False, False, "MAXN", 306, 2133),
        # JetPack 7: no Online= and no FreqOverride; the locked memory clock shows MinFreq == MaxFreq. The old parser
        # read the missing FreqOverride as "not locked" and called this board unlocked
        ("agx-orin-jp7-jetson_clocks-locked.txt", True, True, True, True, "MAXN", 1300, 3199),
        ("orin-nano-jp7-jetson_clocks-default.txt", False, False, False, False, "15W", 306, 2133),
        # only CPU lines survived: what is known is unlocked, the rest unknown
        ("xavier-nx-jetson_clocks-partial.txt", False, None, None, False, None, None, None),
    ],
)
def test_jetson_clocks_show_recorded_on_boards(name, cpu, gpu, emc, locked, mode, gpu_mhz, emc_mhz):
    state = parse_jetson_clocks(recorded(name))
    assert (state["cpu_locked"], state["gpu_locked"], state["emc_locked"]) == (cpu, gpu, emc)
    assert state["locked"] is locked and state["power_mode"] == mode
    assert (state["gpu_mhz"], state["emc_mhz"]) == (gpu_mhz, emc_mhz)


def test_current_frequency_is_not_compared():
    """Xavier/Orin cpufreq estimates CurrentFreq from counters (the recorded AGX Orin: cpu0 2201600 and cpu3 1190400
    in one 4-core cluster), so a pinned CPU may read a little off its MinFreq == MaxFreq."""
    text = recorded("agx-orin-jp7-jetson_clocks-locked.txt").replace("CurrentFreq=2201600", "CurrentFreq=2188800", 1)
    assert parse_jetson_clocks(text)["cpu_locked"] is True


@pytest.mark.parametrize(
    "name, expected",
    [
        ("nano-nvpmodel.txt", {"name": "5W", "id": 1}),  # without sudo: NVPM ERROR lines after the mode
        ("xavier-nvpmodel.txt", {"name": "MAXN", "id": None}),  # fan mode first, no id line
        ("orin-nano-jp7-nvpmodel.txt", {"name": "15W", "id": 0}),
        ("thor-nvpmodel.txt", {"name": "MAXN", "id": 0}),
    ],
)
def test_nvpmodel_query_recorded_on_boards(name, expected):
    assert parse_nvpmodel(recorded(name)) == expected


def _tool(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.fixture
def fake_jetson(tmp_path, monkeypatch):
    """A Jetson as jetson_state sees it: its release file and model, and fake tools first on PATH."""
    files = {"/etc/nv_tegra_release": "# R32 (release), REVISION: 2.3", "/proc/device-tree/model": "NVIDIA Jetson"}
    monkeypatch.setattr(environment, "_read", lambda path: files.get(path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    nvpmodel = (FIXTURES / "nano-nvpmodel.txt").read_text().partition("\n")[2]
    # as on the Nano without root: the mode on stdout, the errors after it, and (assumed here) a failing exit code
    _tool(bin_dir, "nvpmodel", f"cat <<'EOF'\n{nvpmodel}EOF\nexit 1\n")
    return bin_dir


def test_without_root_and_without_passwordless_sudo_the_clocks_are_unknown(fake_jetson, monkeypatch):
    monkeypatch.setattr(environment.os, "geteuid", lambda: 1000)
    _tool(fake_jetson, "sudo", 'echo "sudo: a password is required" >&2\nexit 1\n')
    _tool(fake_jetson, "jetson_clocks", "echo must not run without sudo\nexit 1\n")
    state = jetson_state()
    assert state["clocks_locked"] is None and state["clocks_raw"] is None
    assert (state["power_mode"], state["power_mode_id"]) == ("5W", 1)  # read although nvpmodel exited 1
    assert warnings_for({"jetson": state}) == []


def test_as_root_jetson_clocks_runs_directly(fake_jetson, monkeypatch):
    monkeypatch.setattr(environment.os, "geteuid", lambda: 0)
    _tool(fake_jetson, "sudo", "exit 1\n")  # must not be used as root
    show = recorded("agx-orin-jp7-jetson_clocks-locked.txt")
    _tool(fake_jetson, "jetson_clocks", f"[ \"$1\" = --show ] || exit 2\ncat <<'EOF'\n{show}EOF\n")
    state = jetson_state()
    assert state["clocks_locked"] is True and state["clocks"]["emc_locked"] is True
    assert warnings_for({"jetson": state}) == []


def test_through_passwordless_sudo(fake_jetson, monkeypatch):
    monkeypatch.setattr(environment.os, "geteuid", lambda: 1000)
    _tool(fake_jetson, "sudo", '[ "$1" = -n ] || exit 1\nshift\nexec "$@"\n')
    show = recorded("nano-jetson_clocks-default.txt")
    _tool(fake_jetson, "jetson_clocks", f"cat <<'EOF'\n{show}EOF\n")
    state = jetson_state()
    assert state["clocks_locked"] is False
    assert any("jetson_clocks" in note for note in warnings_for({"jetson": state}))
