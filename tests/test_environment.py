"""Jetson state from the outputs of `jetson_clocks --show` and `nvpmodel -q` as real boards print them (Nano on
L4T 32, Orin Nano / NX / AGX on L4T 35-36; formats from published board logs), and the environment warnings."""

from __future__ import annotations

import pytest

from ddnn_deploy.measure.environment import parse_jetson_clocks, parse_nvpmodel, warnings_for

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
