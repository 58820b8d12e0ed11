"""A real OpenSSH server for the remote tests: Debian's sshd on a free loopback port, with a throw-away host key,
a throw-away client key in its authorized_keys, and a known_hosts file that holds its host key.

Sessions get ``DDNN_REMOTE_CACHE`` and ``DDNN_REMOTE_LIB`` (sshd's SetEnv), so the remote artifact cache and the
wheels ``--install`` pushes live in the test's folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def available() -> str | None:
    """None when a test sshd can run here, else why not."""
    if not Path(SSHD).exists():
        return "needs Debian's openssh-server (scripts/bootstrap.sh installs it)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "needs the OpenSSH client (ssh, ssh-keygen)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@dataclass
class Server:
    port: int
    client_key: Path
    known_hosts: Path
    host_key: Path
    cache: Path
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(folder: Path) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    host_key = keygen(folder / "host_key")
    client_key = keygen(folder / "client_key")
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = free_port()
    cache = folder / "remote-cache"
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n"
        f"StrictModes no\nPidFile {folder / 'sshd.pid'}\nLogLevel ERROR\n"
        f"SetEnv DDNN_REMOTE_CACHE={cache} DDNN_REMOTE_LIB={folder / 'remote-lib'}\n"
        "PermitRootLogin prohibit-password\nMaxStartups 50\n"
    )
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(folder / 'host_key.pub').read_text().split(' ')[0]} "
                     f"{(folder / 'host_key.pub').read_text().split(' ')[1]}\n")  # fmt: skip
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation folder
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(folder / "sshd.log", "wb"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return Server(port, client_key, known, host_key, cache, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("sshd did not start listening within 15 s")
