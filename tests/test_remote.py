"""bench --host against a real OpenSSH server on loopback (tests/sshd.py): the same depths and accuracies as a
local bench, only changed files travel, unknown host keys refused, and every failure one line with nothing
half-written here."""

from __future__ import annotations

import getpass
import json
import sys

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
