"""Killed runs leave nothing behind: SIGTERM is handled like Ctrl-C (exit 130, temporary files removed), and
after SIGKILL at a random moment the previous outputs are intact, no child process keeps running, and the
next run removes what the killed one left."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals and /proc: Linux only")

QUICK = """
[profiles.quick]
extends = "x86-cpu"
optional_backends = []  # onnxruntime only: OpenVINO has tests of its own
precisions = ["fp32"]
threads = 1
batch_sizes = [1]
warmup_iters = 2
warmup_seconds = 0.0
min_iters = 400
min_seconds = 0.5
"""


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ddnn_deploy", *args, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (the sandbox path): orphans of a killed run."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if text in cmdline and "zombie" not in state:
            found.append(cmdline)
    return found


def _work_started(command: str, run: subprocess.Popen, root: Path, artifacts: Path) -> bool:
    """Wait until the run is inside its work (its temporary entry exists), so a signal lands there."""
    import tempfile

    pattern = {
        "export": (root, f".art.tmp-{run.pid}-*"),
        "calibrate": (artifacts, f".work.calibrate-{run.pid}-*"),
        "bench": (Path(tempfile.gettempdir()), f".ddnn.bench-{run.pid}-*"),
    }[command]
    deadline = time.time() + 120
    while time.time() < deadline and run.poll() is None:
        if list(pattern[0].glob(pattern[1])):
            return True
        time.sleep(0.05)
    return False


def _bench_temps(pid: int) -> list[Path]:
    import tempfile

    return list(Path(tempfile.gettempdir()).glob(f".ddnn.bench-{pid}-*"))


def _temps(*folders: Path) -> list[str]:
    from ddnn_deploy.atomic import is_temp_name

    return [p.name for folder in folders if folder.exists() for p in folder.iterdir() if is_temp_name(p.name)]


@pytest.fixture()
def world(tiny_ckpt, tiny_artifacts, tmp_path):
    """A sandbox holding a checkpoint, a finished export, a profile and earlier results."""
    ckpt = tmp_path / "tiny.pt"
    shutil.copy(tiny_ckpt, ckpt)
    artifacts = tmp_path / "art"
    shutil.copytree(tiny_artifacts, artifacts)
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(QUICK)
    return tmp_path, ckpt, artifacts, profiles


def _commands(root: Path, ckpt: Path, artifacts: Path, profiles: Path) -> dict[str, list[str]]:
    return {
        "export": ["export", "--ckpt", str(ckpt), "--out", str(artifacts), "--force", "--depths", "8,14"],
        "calibrate": ["calibrate", "--artifacts", str(artifacts), "--samples", "64", "--eval-samples", "3000"],
        "bench": [
            "bench",
            "--artifacts",
            str(artifacts),
            "--device",
            "quick",
            "--profiles",
            str(profiles),
            "--results",
            str(root / "results.json"),
        ],
    }


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "calibrate", "bench"])
def test_sigterm_is_handled_like_ctrl_c(world, command):
    root, ckpt, artifacts, profiles = world
    before = _hashes(artifacts)
    run = _cli(*_commands(root, ckpt, artifacts, profiles)[command])
    if not _work_started(command, run, root, artifacts):
        pytest.fail(f"{command} never started its work: {run.communicate()}")
    time.sleep(0.3)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    if run.returncode == 0:
        pytest.skip(f"{command} finished before the signal on this machine")
    assert run.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: nothing was replaced"), stderr
    assert "Traceback" not in stderr
    assert _hashes(artifacts) == before
    assert _temps(root, artifacts) == [] and not (root / "results.json").exists() and not _bench_temps(run.pid)
    deadline = time.time() + 5
    while _processes_mentioning(str(root)) and time.time() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(root)) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "calibrate", "bench"])
def test_kill_9_at_a_random_moment_loses_nothing_and_the_next_run_cleans_up(world, command):
    root, ckpt, artifacts, profiles = world
    before = _hashes(artifacts)
    argv = _commands(root, ckpt, artifacts, profiles)[command]
    rng = random.Random(f"{command}-kill")  # repeatable "random" moments within the work
    killed = []
    for delay in (rng.uniform(0.0, 0.5), rng.uniform(0.5, 2.0)):
        run = _cli(*argv)
        assert _work_started(command, run, root, artifacts), run.communicate()
        time.sleep(delay)
        run.kill()
        run.communicate(timeout=60)
        killed.append(run.pid)
        if command == "bench":
            assert _hashes(artifacts) == before  # bench never writes the export folder
        manifest_ok = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from ddnn_deploy.formats.manifest import read_manifest; read_manifest(sys.argv[1])",
                str(artifacts),
            ],
            capture_output=True,
            text=True,
        )
        assert manifest_ok.returncode == 0, manifest_ok.stderr  # every listed file exists with its sha256
        deadline = time.time() + 5  # children die with their parent (PR_SET_PDEATHSIG)
        while _processes_mentioning(str(root)) and time.time() < deadline:
            time.sleep(0.1)
        assert _processes_mentioning(str(root)) == []
    again = _cli(*argv)
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert _temps(root, artifacts) == []  # the next run removed what the killed ones left
    assert not [t for pid in killed for t in _bench_temps(pid)]
