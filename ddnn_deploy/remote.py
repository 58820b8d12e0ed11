"""``bench --host``: run the bench on a remote device over SSH and bring its results home.

The system ``ssh`` does the transport: keys or the agent only (``BatchMode``, never a password prompt), host keys
checked against known_hosts and an unknown one REFUSED unless ``accept_new_host_key`` (OpenSSH's
``StrictHostKeyChecking=accept-new``: trusted on first use, a changed key still refused). On the device,
``python -m ddnn_deploy.remote_agent`` receives the artifacts into ``~/.cache/ddnn-deploy/artifacts/NAME``
(only files whose sha256 differs travel; the manifest's sha256s are checked there before anything runs), the
bench runs in a fresh temporary folder, and its results come back through the same schema as a local bench,
with ``host`` recorded in the environment. Nothing is written here until the results have arrived whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .errors import RemoteError, UsageError
from .formats.manifest import Manifest, read_manifest
from .formats.results import BenchResults, parse_results

Log = Callable[[str], None]

# Every interpreter call on the device sees the wheel ``--install`` pushed for THIS version first (a folder per
# version: another version's never shadows a pip-installed one). POSIX shell syntax, expanded on the device.
REMOTE_LIB = "${DDNN_REMOTE_LIB:-$HOME/.cache/ddnn-deploy/lib}"
SHELL_SAFE = re.compile(r"^[A-Za-z0-9.+_-]+$")

# Run with the device's own interpreter as ``python -c INSTALL_PY VERSION SHA256``, the wheel on stdin: it needs
# nothing but the standard library (the device may have no ddnn-deploy yet, or no pip). A pure-Python wheel
# unpacked onto sys.path is installed; it lands in a temporary folder first and is renamed into place whole.
INSTALL_PY = r"""
import hashlib, io, json, os, shutil, sys, tempfile, zipfile
version, digest = sys.argv[1], sys.argv[2]
data = sys.stdin.buffer.read()
if hashlib.sha256(data).hexdigest() != digest:
    sys.exit("error: the wheel arrived damaged (its sha256 differs); run again")
root = os.environ.get("DDNN_REMOTE_LIB") or os.path.join(os.path.expanduser("~"), ".cache", "ddnn-deploy", "lib")
os.makedirs(root, exist_ok=True)
wheel = zipfile.ZipFile(io.BytesIO(data))
for name in wheel.namelist():
    if name.startswith("/") or "\\" in name or ".." in name.split("/"):
        sys.exit("error: refusing the wheel entry %r" % name)
work = tempfile.mkdtemp(prefix=".install-", dir=root)
try:
    wheel.extractall(os.path.join(work, "lib"))
    final = os.path.join(root, version)
    if os.path.isdir(final):
        os.rename(final, os.path.join(work, "old"))
    try:
        os.rename(os.path.join(work, "lib"), final)
    except OSError:
        if not os.path.isdir(final):  # else another run put the same version in place just now
            raise
finally:
    shutil.rmtree(work, ignore_errors=True)
print(json.dumps({"dir": final, "bytes": len(data)}))
"""


@dataclass
class SSHTarget:
    """Where and how to reach a device. ``host`` is ``[user@]name``; ``python`` is the remote interpreter that has
    ddnn-deploy's runtime half (``pip install 'ddnn-deploy[runtime]'``)."""

    host: str
    port: int = 22
    identity: str | None = None
    python: str = "python3"
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    connect_timeout: int = 10
    extra_options: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise UsageError(f"--host must be [user@]name, not {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise UsageError(f"--port must be an integer in 1..65535, not {self.port!r}")
        if self.identity is not None and not Path(self.identity).expanduser().is_file():
            raise UsageError(f"--identity {self.identity} is not a file")

    @property
    def name(self) -> str:
        """The host without the user (what the results record: never a credential)."""
        return self.host.rpartition("@")[2]

    def ssh(self, remote: list[str]) -> list[str]:
        options = [
            "-o", "BatchMode=yes",  # keys or the agent; never a password prompt
            "-o", f"StrictHostKeyChecking={'accept-new' if self.accept_new_host_key else 'yes'}",
            "-o", f"ConnectTimeout={self.connect_timeout}",
            "-o", "LogLevel=ERROR",
            "-p", str(self.port),
        ]  # fmt: skip
        if self.known_hosts:
            options += ["-o", f"UserKnownHostsFile={Path(self.known_hosts).expanduser()}"]
        if self.identity:
            options += ["-i", str(Path(self.identity).expanduser()), "-o", "IdentitiesOnly=yes"]
        command = " ".join(shlex.quote(a) for a in remote)
        if remote and remote[0] == self.python:  # this version's pushed wheel (--install) first, where there is one
            command = f'PYTHONPATH="{REMOTE_LIB}/{__version__}${{PYTHONPATH:+:$PYTHONPATH}}" {command}'
        return ["ssh", *options, *self.extra_options, self.host, "--", command]


def ssh_failure(target: SSHTarget, stderr: str) -> str:
    """What went wrong, in one line, from ssh's own messages (exit status 255)."""
    text = " ".join(stderr.split())
    where = f"{target.host} port {target.port}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key for" in stderr and "has changed" in stderr:
        return f"the host key of {where} has CHANGED since it was recorded in known_hosts: refusing it (check why)"
    if "Host key verification failed" in text or "No ED25519 host key is known" in text or "host key is known" in text:
        return (
            f"the host key of {where} is not in known_hosts: check it and add it (ssh-keyscan -p {target.port} "
            f"{target.name} >> ~/.ssh/known_hosts), or trust it on first use with --accept-new-host-key"
        )
    if "Permission denied" in text:
        return f"{where} refused the key (keys and the SSH agent only, no passwords): pass --identity KEY"
    if "Connection refused" in text:
        return f"cannot reach {where}: connection refused (is sshd running there, and the port right?)"
    if "timed out" in text or "No route to host" in text or "Network is unreachable" in text:
        return f"cannot reach {where}: {text[-120:]}"
    if "Could not resolve hostname" in text:
        return f"cannot resolve {target.name}: check --host"
    return f"ssh to {where} failed: {text[-200:] or 'exit 255'}"


def run(
    target: SSHTarget,
    remote: list[str],
    *,
    stdin: bytes | None = None,
    timeout: float | None = 120,
) -> subprocess.CompletedProcess:
    """Run ``remote`` on the device; ssh's own failures become one RemoteError line."""
    try:
        done = subprocess.run(target.ssh(remote), input=stdin, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise RemoteError("the ssh client is not installed here: apt-get install openssh-client") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{target.host} did not answer within {timeout:.0f} s") from None
    if done.returncode == 255:
        raise RemoteError(ssh_failure(target, done.stderr.decode(errors="replace")))
    return done


def _check_interpreter(target: SSHTarget, code: int, err: str) -> None:
    """The shell found no ``target.python`` (exit 127, "not found"): one line saying what to pass."""
    if code == 127 or "not found" in err and target.python in err:
        raise RemoteError(f"{target.host} has no {target.python}: pass --remote-python PATH")


def _last_line(lines: list[str], default: str) -> str:
    """The last non-empty line of a remote command's stderr, without its ``error: `` prefix."""
    last = next((line.strip() for line in reversed(lines) if line.strip()), default)
    return last[len("error: ") :] if last.startswith("error: ") else last


def agent(target: SSHTarget, *args: str, stdin: bytes | None = None, timeout: float = 120) -> dict[str, Any]:
    """One remote_agent command; its JSON answer, or its one-line error as a RemoteError."""
    done = run(target, [target.python, "-m", "ddnn_deploy.remote_agent", *args], stdin=stdin, timeout=timeout)
    err = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        if "No module named" in err and "ddnn_deploy" in err:
            raise RemoteError(
                f"{target.host} has no ddnn-deploy for {target.python}: push this version there with --install "
                f"(or pip install 'ddnn-deploy[runtime]=={__version__}' there), or point --remote-python at the "
                "interpreter that has it"
            )
        _check_interpreter(target, done.returncode, err)
        lacking = re.search(r"No module named '([^']+)'", err)
        if lacking:
            raise RemoteError(
                f"{target.python} on {target.host} lacks {lacking.group(1)}, which ddnn-deploy needs: install the "
                f"runtime's dependencies there (pip install 'ddnn-deploy[runtime]=={__version__}')"
            )
        lines = [line for line in err.splitlines() if line.strip()]
        raise RemoteError(
            f"{target.host}: {lines[-1] if lines else f'remote_agent {args[0]} exited {done.returncode}'}"
        )
    try:
        return json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RemoteError(f"{target.host}: remote_agent {args[0]} gave no answer") from None


def check_version(target: SSHTarget) -> dict[str, Any]:
    info = agent(target, "version")
    if info.get("ddnn_deploy") != __version__:
        raise RemoteError(
            f"{target.host} runs ddnn-deploy {info.get('ddnn_deploy')}, this is {__version__}: push this version "
            f"there with --install (or pip install 'ddnn-deploy[runtime]=={__version__}' there)"
        )
    return info


def install_runtime(target: SSHTarget, log: Log) -> str:
    """Push a wheel of the ddnn-deploy running here to the device, where every later call finds it; its folder."""
    from .wheel import runtime_wheel

    if not SHELL_SAFE.match(__version__):
        raise RemoteError(f"cannot install version {__version__!r} remotely: not a plain version string")
    name, data = runtime_wheel()
    digest = hashlib.sha256(data).hexdigest()
    done = run(target, [target.python, "-c", INSTALL_PY, __version__, digest], stdin=data, timeout=300)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")
        _check_interpreter(target, done.returncode, err)
        reason = _last_line(err.splitlines(), f"exit {done.returncode}")
        raise RemoteError(f"installing {name} on {target.host} failed: {reason}")
    where = json.loads(done.stdout.decode().strip().splitlines()[-1])["dir"]
    log(f"{target.name}: installed {name} ({len(data) / 1e3:.0f} KB) in {where}")
    return where


def _manifest_files(manifest: Manifest) -> dict[str, str]:
    """name -> sha256 of what the device needs: every listed file, and the manifest itself."""
    from .atomic import sha256_file

    files = {r.path: r.sha256 for a in manifest.artifacts for r in a.files()}
    files["manifest.json"] = sha256_file(manifest.root / "manifest.json")
    return files


def push_artifacts(target: SSHTarget, manifest: Manifest, log: Log) -> str:
    """Copy what the device lacks (by sha256) and have it check the manifest there; the remote folder."""
    files = _manifest_files(manifest)
    name = f"{manifest.arch}-{manifest.checkpoint.sha256[:16]}"
    there = agent(target, "have", name, stdin=json.dumps(sorted(files)).encode())
    missing = [f for f, sha in files.items() if there["sha256"].get(f) != sha]
    missing.sort(key=lambda f: f == "manifest.json")  # the manifest last
    size = sum((manifest.root / f).stat().st_size for f in missing)
    log(f"{target.name}: {len(files) - len(missing)} of {len(files)} files already there, sending {len(missing)} "
        f"({size / 1e6:.1f} MB)")  # fmt: skip
    if not missing:  # every file already there with its sha256: no second round trip (bench re-checks them)
        return there["dir"]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for f in missing:
            tar.add(manifest.root / f, arcname=f, recursive=False)
    agent(target, "receive", name, stdin=buffer.getvalue(), timeout=max(120.0, size / 5e6))
    return there["dir"]


def _bench_args(remote_dir: str, workdir: str, options: dict[str, Any]) -> list[str]:
    args = ["-m", "ddnn_deploy", "bench", "--artifacts", remote_dir, "--results", f"{workdir}/results.json"]
    for flag, value in options.items():
        if value is None or value is False:
            continue
        args += [flag] if value is True else [flag, str(value)]
    return [*args, "--no-progress"]


def _stream(target: SSHTarget, command: list[str], log: Log, timeout: float) -> int:
    """Run the remote bench, passing its status lines on as they come; its exit status."""
    proc = subprocess.Popen(target.ssh(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tail: list[str] = []

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            tail.append(line.rstrip())
            log(f"{target.name}: {line.rstrip()}")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RemoteError(f"the bench on {target.host} took longer than {timeout:.0f} s; it was stopped") from None
    reader.join(timeout=5)
    if code == 255:
        raise RemoteError(ssh_failure(target, "\n".join(tail)))
    if code not in (0, 9, 10):  # 9/10: rows failed, the results are written
        raise RemoteError(f"the bench on {target.host} failed: {_last_line(tail, f'exit {code}')}")
    return code


def remote_bench(
    artifacts: str | Path,
    target: SSHTarget,
    *,
    options: dict[str, Any],
    profiles_file: str | Path | None = None,
    timeout: float = 3600.0,
    install: bool = False,
    log: Log | None = None,
) -> BenchResults:
    """Bench ``artifacts`` on ``target`` with ``options`` (the bench command's flags, e.g. ``{"--device":
    "jetson"}``); the results, with ``host`` in the environment. Writes nothing locally. ``install`` first pushes
    a wheel of this ddnn-deploy to the device (``install_runtime``)."""
    say = log or (lambda message: None)
    started = time.monotonic()
    manifest = read_manifest(artifacts)
    if install:
        install_runtime(target, say)
    info = check_version(target)
    remote_dir = push_artifacts(target, manifest, say)
    workdir = agent(target, "workdir")["dir"]
    try:
        if profiles_file is not None:
            agent(target, "put", workdir, "profiles.toml", stdin=Path(profiles_file).read_bytes())
            options = {**options, "--profiles": f"{workdir}/profiles.toml"}
        left = max(60.0, timeout - (time.monotonic() - started))
        code = _stream(target, [target.python, *_bench_args(remote_dir, workdir, options)], say, left)
        text = run(target, [target.python, "-m", "ddnn_deploy.remote_agent", "cat", workdir, "results.json"])
        if text.returncode != 0:
            raise RemoteError(f"the bench on {target.host} exited {code} and wrote no results")
    finally:
        try:
            agent(target, "cleanup", workdir)
        except RemoteError:
            pass
    try:
        data = json.loads(text.stdout.decode())
    except ValueError:
        raise RemoteError(f"the results from {target.host} are not JSON") from None
    data.setdefault("device", {}).setdefault("environment", {})["host"] = target.name
    data["device"]["environment"]["remote_python"] = info.get("python")
    return parse_results(data, where=f"results from {target.host}")


OVERRIDE_FLAGS = {
    "warmup_iters": "--warmup",
    "min_iters": "--iterations",
    "min_seconds": "--duration",
    "threads": "--threads",
    "batch_sizes": "--batch-sizes",
}


def bench_on_host(
    artifacts: str | Path,
    target: SSHTarget,
    *,
    device: str = "x86-cpu",
    profiles_file: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    limit: int | None = None,
    depths: list[int] | None = None,
    include_selector: bool = False,
    results_path: str | Path | None = None,
    force: bool = False,
    engine_cache: str | None = None,
    precisions: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    plot: bool = True,
    timeout: float = 3600.0,
    install: bool = False,
    log: Log | None = None,
) -> BenchResults:
    """``bench`` on ``target``: the same arguments as the local ``bench`` (``data_dir`` and ``engine_cache`` are
    paths on the device), the results written here (``results_path``, with CSV and plot) and returned.
    ``install``: push a wheel of this ddnn-deploy to the device first (its dependencies must be there)."""
    from .errors import MeasurementError
    from .measure.sweep import check_results_target, write_outputs

    if not isinstance(device, str):
        raise UsageError("a remote bench takes a profile name (built in, or from --profiles), not a DeviceProfile")
    manifest = read_manifest(artifacts)
    if results_path is not None:
        check_results_target(Path(results_path), manifest, force=force)  # before anything travels
    options: dict[str, Any] = {
        "--device": device,
        "--dataset": "none" if dataset is None else dataset,  # as the local bench: None is latency only
        "--data": data_dir,
        "--limit": limit,
        "--depths": ",".join(map(str, depths)) if depths else None,
        "--selector": include_selector,
        "--engine-cache": engine_cache,
        "--precision": ",".join(precisions) if precisions else None,
    }
    for key, value in (overrides or {}).items():
        if key not in OVERRIDE_FLAGS:
            raise UsageError(f"a remote bench cannot override {key}; use a profiles file (--profiles)")
        options[OVERRIDE_FLAGS[key]] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    results = remote_bench(
        artifacts, target, options=options, profiles_file=profiles_file, timeout=timeout, install=install, log=log
    )
    if results_path is not None:
        write_outputs(results, Path(results_path), plot=plot)
    if results.rows and all(row.status == "error" for row in results.rows):
        raise MeasurementError(f"every measurement on {target.host} failed (first: {results.rows[0].error})")
    return results
