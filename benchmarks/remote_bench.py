"""bench --host's overhead (issue 15), over a real sshd on loopback (the tests' tests/sshd.py): the same depth's
p50 measured remotely against locally (same profile, alternating runs), the artifact copy the first and the
second time (when every hash already matches), and ``fleet bench`` of 3 devices in parallel against one by one.

    python benchmarks/remote_bench.py

Loopback: the "device" is this machine, so the figures are the tool's overhead, not a network's.
"""

from __future__ import annotations

import getpass
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import save_result  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import sshd

    from ddnn_deploy import export
    from ddnn_deploy.fleet import fleet_bench
    from ddnn_deploy.formats.fleet import Fleet
    from ddnn_deploy.formats.manifest import read_manifest
    from ddnn_deploy.measure.environment import capture
    from ddnn_deploy.measure.sweep import bench
    from ddnn_deploy.remote import SSHTarget, bench_on_host, push_artifacts

    work = Path(tempfile.mkdtemp(prefix="ddnn-remote-bench-"))
    server = sshd.start(work / "sshd")
    try:
        export(ROOT / "models" / "fmnist-resnet20-ddnn.pt", work / "a", simplify=True)
        target = SSHTarget(f"{getpass.getuser()}@127.0.0.1", port=server.port, identity=str(server.client_key),
                           known_hosts=str(server.known_hosts), python=sys.executable)  # fmt: skip
        manifest = read_manifest(work / "a")
        copies = []
        for _ in range(2):
            t = time.perf_counter()
            push_artifacts(target, manifest, print)
            copies.append(time.perf_counter() - t)
        overrides = {"batch_sizes": [1], "threads": 2, "min_seconds": 3.0, "warmup_iters": 200}
        common = dict(device="x86-cpu", depths=[20], precisions=["fp32"], overrides=overrides)
        local, remote = [], []
        for _ in range(3):
            local.append(bench(work / "a", progress=False, **common).rows[0].latency("p50"))
            remote.append(bench_on_host(work / "a", target, **common).rows[0].latency("p50"))
        devices = {
            f"d{i}": {
                "host": target.host,
                "port": server.port,
                "device": "x86-cpu",
                "budget_ms": 5.0,
                "python": sys.executable,
                "identity": str(server.client_key),
            }  # fmt: skip
            for i in range(3)
        }
        fleet = Fleet.model_validate({"devices": devices})
        walls = {}
        for parallel in (True, False):
            t = time.perf_counter()
            fleet_bench(fleet, work / "a", work / f"fleet-{parallel}", precisions=["fp32"],
                        known_hosts=str(server.known_hosts), parallel=parallel)  # fmt: skip
            walls["parallel" if parallel else "one_by_one"] = time.perf_counter() - t
        result = {
            "environment": capture("onnxruntime", 2),
            "copy_seconds": {"first": copies[0], "second": copies[1]},
            "p50_ms": {"local": local, "remote": remote},
            "remote_over_local": statistics.median(remote) / statistics.median(local),
            "fleet_3_devices_seconds": walls,
            "note": "loopback sshd on this 2-core machine: the 3 fleet devices share its 2 cores",
        }
        print({k: v for k, v in result.items() if k != "environment"})
        save_result("remote-bench", result)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
