"""bench --host against a real OpenSSH server on loopback (tests/sshd.py): the same depths and accuracies as a
local bench, only changed files travel, unknown host keys refused, and every failure one line with nothing
half-written here."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sshd
from helpers import cli_runner

from ddnn_deploy.cli import cli
from ddnn_deploy.errors import RemoteError, UsageError
from ddnn_deploy.remote import SSHTarget, bench_on_host, ssh_failure

pytestmark = pytest.mark.skipif(sshd.available() is not None, reason=sshd.available() or "")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


def _target(server, **kw):
    return SSHTarget(
        f"{getpass.getuser()}@127.0.0.1",
        port=server.port,
        identity=str(server.client_key),
        known_hosts=str(server.known_hosts),
        python=sys.executable,
        **kw,
    )


QUICK = {"warmup_iters": 2, "min_iters": 10, "min_seconds": 0.0, "threads": 1, "batch_sizes": [1]}


def test_remote_bench_equals_a_local_one_and_sends_only_what_changed(server, tiny_artifacts, tmp_path):
    from ddnn_deploy.measure.sweep import bench

    lines = []
    out = tmp_path / "remote.json"
    common = dict(device="x86-cpu", dataset="fashion-mnist", limit=200, precisions=["fp32"], overrides=QUICK)
    remote = bench_on_host(tiny_artifacts, _target(server), results_path=out, log=lines.append, **common)
    local = bench(tiny_artifacts, progress=False, **{**common, "device": "x86-cpu"})
    pairs = {(r.backend, r.depth, r.precision): r.top1 for r in local.rows}
    assert {(r.backend, r.depth, r.precision): r.top1 for r in remote.rows} == pairs  # same rows, same accuracy
    assert remote.device["environment"]["host"] == "127.0.0.1"
    assert json.loads(out.read_text())["device"]["environment"]["host"] == "127.0.0.1"
    assert out.with_suffix(".csv").exists()
    assert any("sending" in line and "0 of" in line for line in lines)  # the first time every file travels
    lines.clear()
    bench_on_host(tiny_artifacts, _target(server), results_path=out, log=lines.append, **common)
    sent = next(line for line in lines if "sending" in line)
    assert "sending 0 (0.0 MB)" in sent, sent  # the second time nothing does


def test_the_cli_runs_it_and_prints_the_table(server, tiny_artifacts, tmp_path):
    args = ["bench", "--artifacts", str(tiny_artifacts), "--host", f"{getpass.getuser()}@127.0.0.1"]
    args += ["--port", str(server.port), "--identity", str(server.client_key), "--known-hosts", str(server.known_hosts)]
    args += ["--remote-python", sys.executable, "--precision", "fp32", "--depths", "8", "--iterations", "5"]
    args += ["--duration", "0", "--warmup", "1", "--batch-sizes", "1", "--results", str(tmp_path / "r.json")]
    result = cli_runner().invoke(cli, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.stdout and (tmp_path / "r.json").exists()


def _one_line(result, fragment, code=12):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code and len(lines) == 1 and fragment in lines[0], result.output
    assert lines[0].startswith("error: ")


def _cli(server, tiny_artifacts, tmp_path, *extra, known=None, key=None, port=None, python=None):
    args = ["bench", "--artifacts", str(tiny_artifacts), "--host", f"{getpass.getuser()}@127.0.0.1"]
    args += ["--port", str(port or server.port), "--identity", str(key or server.client_key)]
    args += ["--known-hosts", str(known or server.known_hosts), "--remote-python", python or sys.executable]
    args += ["--results", str(tmp_path / "r.json"), "--no-progress", "--depths", "8", "--precision", "fp32", *extra]
    return cli_runner().invoke(cli, args)


def test_an_unknown_host_key_is_refused_unless_trusted_on_first_use(server, tiny_artifacts, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    _one_line(_cli(server, tiny_artifacts, tmp_path, known=empty), "is not in known_hosts")
    assert not (tmp_path / "r.json").exists() and empty.read_text() == ""
    result = _cli(server, tiny_artifacts, tmp_path, "--accept-new-host-key", "--iterations", "3", "--duration", "0",
                  known=empty)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (server.host_key.with_suffix(".pub")).read_text().split()[1] in empty.read_text()  # trusted, recorded
    other = sshd.keygen(tmp_path / "other_host")
    empty.write_text(f"[127.0.0.1]:{server.port} {(tmp_path / 'other_host.pub').read_text()}")  # a CHANGED key
    _one_line(_cli(server, tiny_artifacts, tmp_path, "--accept-new-host-key", known=empty), "CHANGED")
    assert other.exists()


def test_a_wrong_key_an_unreachable_port_and_no_remote_ddnn_deploy_are_one_line(server, tiny_artifacts, tmp_path):
    wrong = sshd.keygen(tmp_path / "wrong_key")
    _one_line(_cli(server, tiny_artifacts, tmp_path, key=wrong), "refused the key")
    _one_line(_cli(server, tiny_artifacts, tmp_path, port=sshd.free_port()), "connection refused")
    _one_line(_cli(server, tiny_artifacts, tmp_path, python="/usr/bin/python3"), "has no ddnn-deploy for")
    _one_line(_cli(server, tiny_artifacts, tmp_path, python="/nonexistent/python"), "/nonexistent/python")
    assert not (tmp_path / "r.json").exists()  # nothing half-written here


def test_bad_arguments_are_caught_before_connecting(tmp_path):
    with pytest.raises(UsageError, match="--host must be"):
        SSHTarget("-oProxyCommand=evil")
    with pytest.raises(UsageError, match="--port must be"):
        SSHTarget("h", port=70000)
    with pytest.raises(UsageError, match="--identity .* is not a file"):
        SSHTarget("h", identity=str(tmp_path / "none"))
    assert "not in known_hosts" in ssh_failure(SSHTarget("h"), "Host key verification failed.")
    assert isinstance(RemoteError("x"), Exception) and RemoteError.exit_code == 12


PROFILES = """
[profiles.q-ort]
extends = "x86-cpu"
optional_backends = []
precisions = ["fp32"]
threads = 1
batch_sizes = [1]
warmup_iters = 2
warmup_seconds = 0.0
min_iters = 10
min_seconds = 0.0

[profiles.q-ov]
extends = "q-ort"
backend = "openvino"
"""


def test_a_fleet_of_three_hosts_one_broken(server, tiny_artifacts, tmp_path):
    """The loopback sshd under two profiles, plus a host that does not answer: two picks and one error."""
    pytest.importorskip("openvino", reason="the second device profile runs OpenVINO")
    user = getpass.getuser()
    (tmp_path / "profiles.toml").write_text(PROFILES)
    fleet = tmp_path / "fleet.toml"

    def device(name, port, profile, budget):
        return (
            f'[devices.{name}]\nhost = "{user}@127.0.0.1"\nport = {port}\ndevice = "{profile}"\n'
            f'budget_ms = {budget}\npython = "{sys.executable}"\nidentity = "{server.client_key}"\n'
        )

    fleet.write_text(
        device("server-a", server.port, "q-ort", 50)
        + device("server-b", server.port, "q-ov", 50)
        + device("gone", sshd.free_port(), "q-ort", 5)
    )
    out = tmp_path / "fleet"
    args = ["fleet", "bench", "--fleet", str(fleet), "--artifacts", str(tiny_artifacts), "--out", str(out)]
    args += ["--profiles", str(tmp_path / "profiles.toml"), "--known-hosts", str(server.known_hosts)]
    result = cli_runner().invoke(cli, [*args, "--dataset", "fashion-mnist", "--limit", "100"])
    assert result.exit_code == 10, result.output  # one device failed, the others' results are there
    assert "1 of 3 devices failed (gone: cannot reach" in result.stderr.splitlines()[-1]
    assert sorted(p.name for p in out.glob("*.json")) == ["fleet.json", "server-a.json", "server-b.json"]
    plan = cli_runner().invoke(cli, ["fleet", "plan", "--results", str(out), "--stat", "p50", "--json"])
    assert plan.exit_code == 0, plan.output
    devices = {d["name"]: d for d in json.loads(plan.stdout)["devices"]}
    assert devices["server-a"]["backend"] == "onnxruntime" and devices["server-b"]["backend"] == "openvino"
    for name in ("server-a", "server-b"):
        rows = json.loads((out / f"{name}.json").read_text())["rows"]
        best = max(r["accuracy"]["top1"] for r in rows)  # every depth fits 50 ms: the most accurate is picked
        assert devices[name]["top1"] == best and devices[name]["error"] is None
        assert devices[name]["depth"] in (8, 14) and devices[name]["latency_ms"] <= 50
    assert "cannot reach" in devices["gone"]["error"] and "depth" not in devices["gone"]
    table = cli_runner().invoke(cli, ["fleet", "plan", "--results", str(out)])
    assert table.exit_code == 0 and "deployment plan" in table.stdout


def _python_without_ddnn_deploy(folder: Path, with_dependencies: bool = True) -> str:
    """A fresh venv that sees this interpreter's site-packages (a .pth lists them; their own .pth files, the
    editable install's among them, are not run): every dependency, but no ddnn-deploy. Or nothing at all."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    if with_dependencies:
        Path(purelib, "host-site.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")))
    return str(python)


def test_install_pushes_this_version_and_later_runs_find_it(tmp_path, tiny_artifacts):
    from ddnn_deploy import __version__

    server = sshd.start(tmp_path / "sshd")  # its own: the pushed wheel must not reach the other tests' hosts
    try:
        bare = _python_without_ddnn_deploy(tmp_path / "bare")
        quick = ("--iterations", "3", "--duration", "0", "--warmup", "1", "--batch-sizes", "1")
        _one_line(_cli(server, tiny_artifacts, tmp_path, *quick, python=bare), "push this version there with --install")
        assert not (tmp_path / "r.json").exists()
        result = _cli(server, tiny_artifacts, tmp_path, *quick, "--install", python=bare)
        assert result.exit_code == 0, result.output
        assert f"installed ddnn_deploy-{__version__}-py3-none-any.whl" in result.stderr
        pushed = tmp_path / "sshd" / "remote-lib" / __version__
        assert (pushed / "ddnn_deploy" / "remote_agent.py").is_file()
        assert not list(pushed.rglob("_bundled_*"))  # the demo files stay home
        again = _cli(server, tiny_artifacts, tmp_path, *quick, python=bare)  # no --install: the pushed one runs
        assert again.exit_code == 0 and "installed ddnn_deploy" not in again.stderr, again.output
        assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["status"] == "ok"
        empty = _python_without_ddnn_deploy(tmp_path / "empty", with_dependencies=False)
        lacking = _cli(server, tiny_artifacts, tmp_path, "--install", python=empty)
        assert lacking.exit_code == 12 and "Traceback" not in lacking.stderr, lacking.output
        assert (
            lacking.stderr.strip().splitlines()[-1].startswith("error: ")
            and "lacks click, which ddnn-deploy needs" in lacking.stderr
        )
    finally:
        server.stop()


def test_the_pushed_wheel_is_a_wheel_pip_installs(tmp_path):
    import base64
    import hashlib
    import zipfile

    from ddnn_deploy import __version__
    from ddnn_deploy.wheel import runtime_wheel

    name, data = runtime_wheel()
    assert runtime_wheel() == (name, data)  # the same code makes the same bytes
    wheel = tmp_path / name
    wheel.write_bytes(data)
    with zipfile.ZipFile(wheel) as z:
        record = z.read(f"ddnn_deploy-{__version__}.dist-info/RECORD").decode().splitlines()
        for line in record:
            path, digest, size = line.rsplit(",", 2)
            if digest:
                body = z.read(path)
                expected = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={expected}" and int(size) == len(body), path
        names = z.namelist()
        assert "ddnn_deploy/runners/onnxruntime_runner.py" in names
        assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n or "_bundled_" in n]
        assert "Requires-Dist: pydantic" in z.read(f"ddnn_deploy-{__version__}.dist-info/METADATA").decode()
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel)], check=True)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", "import ddnn_deploy; print(ddnn_deploy.__file__)"],
                         env={"PYTHONPATH": str(target)}, capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert out.stdout.strip().startswith(str(target)), out.stderr
