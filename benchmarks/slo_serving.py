"""Serving under a latency SLO (issue 11): does switching depth at run time hold the SLO when the device slows?

    python benchmarks/slo_serving.py resnet50            # ResNet-50 (random init): realistic latency
    python benchmarks/slo_serving.py demo                # the demo model: accuracy known
    python benchmarks/slo_serving.py resnet50 --phase-seconds 20 --policies fixed,adaptive

The server (`ddnn-deploy serve`) runs in one process, an open-loop Poisson load generator in another
(loopback only, bounded in count and time), and in the middle phase a CPU hog in a third process steals a
core. Three phases: normal load (full depth uses about ``--load`` of one worker's capacity), hog, hog gone.
Per policy (fixed at full depth, budget = the pick for the SLO, adaptive) and phase: client-side latency
p50/p95/p99, SLO violation rate, 503 rate, served throughput, depth switches, the time to recover after the
hog starts, and the accuracy served (each request weighted by its depth's measured top-1). Also the HTTP
overhead: `serve` p50 at low load against `DepthRuntime.predict` p50 in-process, same depth and image.
Writes results/slo_serving-MODEL.json and a timeline PNG (latency and depth against time, one panel per policy).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import RESULTS, ROOT, save_result  # benchmarks/ is on sys.path when a script here runs

from ddnn_deploy.runtime.server import parse_server_timing

PY = sys.executable
THREADS = 1  # the server's inference threads (--threads); set in main()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str) -> None:
    subprocess.run([PY, "-m", "ddnn_deploy", *args], check=True)


def prepare(model: str, work: Path, threads: int) -> tuple[Path, Path, bytes]:
    """(artifacts, bench results at ``threads`` threads, batch 1, one request body) for the model."""
    artifacts, results = work / "artifacts", work / "results.json"
    if model == "demo":
        ckpt, dataset, depths = ROOT / "models" / "fmnist-resnet20-ddnn.pt", "fashion-mnist", "8,14,20"
    else:
        ckpt, dataset, depths = work / "r50.pt", "none", "26,38,50"
        _cli("convert", "--arch", "resnet50", "--out", str(ckpt))
    _cli("export", "--ckpt", str(ckpt), "--out", str(artifacts), "--depths", depths, "--no-progress")
    profiles = work / "profiles.toml"  # the table the controller scales must be measured as the server runs
    profiles.write_text(f'[profiles.serving]\nextends = "x86-cpu"\nthreads = {threads}\nbatch_sizes = [1]\n')
    _cli(
        "bench",
        "--artifacts",
        str(artifacts),
        "--device",
        "serving",
        "--profiles",
        str(profiles),
        "--dataset",
        dataset,
        "--results",
        str(results),
        "--no-progress",
    )
    shape = json.loads((artifacts / "manifest.json").read_text())["input"]["shape"][1:]
    pixels = np.random.default_rng(0).integers(0, 256, (1, *shape), dtype=np.uint8)
    if model == "demo":
        from ddnn_deploy.data import load_dataset

        pixels = load_dataset("fashion-mnist", "test").images[:1]
    body = io.BytesIO()
    np.save(body, pixels)
    return artifacts, results, body.getvalue()


def _request(url: str, body: bytes) -> tuple[int, int | None, float | None]:
    """(status, depth served, the server's inference time in ms from its Server-Timing header)."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/x-npy"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            infer = parse_server_timing(response.headers.get("Server-Timing", "")).get("infer")
            return response.status, json.loads(response.read())["depth"], infer
    except urllib.error.HTTPError as error:
        return error.code, None, None
    except OSError:
        return 599, None, None


def generate(url: str, body: bytes, rate: float, seconds: float, seed: int) -> list[dict]:
    """Open-loop Poisson arrivals: each request is sent at its scheduled time, whether or not earlier ones
    have answered (a thread per in-flight request, bounded)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, int(rate * seconds * 1.5) + 10))
    arrivals = arrivals[arrivals < seconds]
    records: list[dict] = []
    lock = threading.Lock()
    start = time.perf_counter()

    def send(at: float) -> None:
        delay = start + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        status, depth, infer_ms = _request(url, body)
        latency_ms = (time.perf_counter() - sent) * 1e3
        with lock:
            records.append(
                {"t": sent - start, "latency_ms": latency_ms, "status": status, "depth": depth, "infer_ms": infer_ms}
            )

    with ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(send, arrivals))
    return sorted(records, key=lambda r: r["t"])


SERVER_CPUS = {0}  # the server and the hog share core 0; the load generator keeps the others (see main)


def _pin(pid: int, cpus: set[int]) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, cpus)


def _hog() -> subprocess.Popen:
    """A busy loop on the server's core: the device gets about half as fast."""
    process = subprocess.Popen([PY, "-c", "while True: pass"])
    _pin(process.pid, SERVER_CPUS)
    return process


def _server(artifacts: Path, results: Path, policy: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            PY,
            "-m",
            "ddnn_deploy",
            "serve",
            "--artifacts",
            str(artifacts),
            "--results",
            str(results),
            "--port",
            str(port),
            "--max-queue",
            "32",
            "--threads",
            str(THREADS),
            *policy,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    _pin(process.pid, SERVER_CPUS)
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not start: {process.communicate()[1][-1000:]}")


def run_policy(
    name: str, policy: list[str], artifacts: Path, results: Path, body: bytes, *, rate: float, phase: float, seed: int
) -> list[dict]:
    """One server with ``policy`` through the three phases; the arrival times are the Poisson trace ``seed``
    (the same trace for every policy of that seed)."""
    port = _free_port()
    server = _server(artifacts, results, policy, port)
    url = f"http://127.0.0.1:{port}/v1/predict"
    try:
        generate(url, body, rate, 2.0, seed=99)  # warm-up, discarded
        records: list[dict] = []
        load = threading.Thread(target=lambda: records.extend(generate(url, body, rate, 3 * phase, seed=seed)))
        load.start()
        time.sleep(phase)
        hog = _hog()
        time.sleep(phase)
        hog.kill()
        hog.wait()
        load.join()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print(f"{name}, trace {seed}: {len(records)} requests")
    return records


def summarize(records: list[dict], *, phase: float, slo: float, top1: dict[int, float]) -> list[dict]:
    rows = []
    for index, label in enumerate(("normal", "hog", "recovered")):
        part = [r for r in records if index * phase <= r["t"] < (index + 1) * phase]
        ok = [r for r in part if r["status"] == 200]
        lat = np.array([r["latency_ms"] for r in ok]) if ok else np.array([np.nan])
        depths = [r["depth"] for r in ok]
        served_top1 = [top1[d] for d in depths if top1.get(d) is not None]
        rows.append(
            {
                "phase": label,
                "requests": len(part),
                "served_per_s": len(ok) / phase,
                "p50_ms": float(np.percentile(lat, 50)),
                "p95_ms": float(np.percentile(lat, 95)),
                "p99_ms": float(np.percentile(lat, 99)),
                "slo_violation_rate": float(np.mean([r["status"] != 200 or r["latency_ms"] > slo for r in part]))
                if part
                else None,
                "rejected_503_rate": float(np.mean([r["status"] == 503 for r in part])) if part else None,
                "depth_switches": int(np.count_nonzero(np.diff(depths))) if len(depths) > 1 else 0,
                "depths_served": {str(d): depths.count(d) for d in sorted(set(depths))},
                "accuracy_served": float(np.mean(served_top1)) if served_top1 else None,
                # the device's side: inference ms per request by depth (Server-Timing's infer, the whole call's
                # time: per request as this benchmark serves, without batching), and the share of the phase
                # the server's one worker spent inferring (the load it carried)
                "infer_p50_ms": {
                    str(d): float(np.median([r["infer_ms"] for r in ok if r["depth"] == d and r.get("infer_ms")]))
                    for d in sorted(set(depths))
                    if any(r["depth"] == d and r.get("infer_ms") for r in ok)
                },
                "busy_fraction": sum(r.get("infer_ms") or 0.0 for r in ok) / (phase * 1e3),
            }
        )
    rows[1]["reaction_s"] = reaction_seconds(records, phase=phase, shallowest=min(top1))
    rows[1]["recovery_s"] = recovery_seconds(records, phase=phase, slo=slo)
    rows[1]["last_breach_s"] = last_breach_seconds(records, phase=phase, slo=slo)
    return rows


def pooled(per_trace: dict[str, list[dict]], *, phase: float) -> list[dict]:
    """Per phase over all traces: requests, the rates weighted by requests, the worst tail and recovery."""
    rows = []
    for index, label in enumerate(("normal", "hog", "recovered")):
        parts = [phases[index] for phases in per_trace.values()]
        total = sum(p["requests"] for p in parts)

        def weighted(key: str, parts: list[dict] = parts, total: int = total) -> float | None:
            return sum((p[key] or 0.0) * p["requests"] for p in parts) / total if total else None

        served = [(p["accuracy_served"], p["served_per_s"]) for p in parts]
        p99s = [p["p99_ms"] for p in parts if np.isfinite(p["p99_ms"])]  # NaN: nothing served in that trace

        depths: dict[str, int] = {}
        for part in parts:
            for depth, count in part["depths_served"].items():
                depths[depth] = depths.get(depth, 0) + count
        row = {
            "phase": label,
            "traces": len(parts),
            "requests": total,
            "slo_violation_rate": weighted("slo_violation_rate"),
            "rejected_503_rate": weighted("rejected_503_rate"),
            "worst_trace_violation_rate": max((p["slo_violation_rate"] or 0.0) for p in parts),
            "worst_p99_ms": max(p99s) if p99s else None,
            "served_per_s": sum(p["served_per_s"] for p in parts) / len(parts),
            "depths_served": depths,
            "accuracy_served": sum(a * n for a, n in served) / sum(n for _, n in served)  # weighted by served
            if all(a is not None for a, _ in served) and sum(n for _, n in served) > 0
            else None,
            "depth_switches": sum(p["depth_switches"] for p in parts),
        }
        if label == "hog":
            for key in ("reaction_s", "recovery_s", "last_breach_s"):
                values = [p.get(key) for p in parts]
                row[f"{key}_per_trace"] = values
                row[key] = None if None in values else max(values)  # the worst trace
        rows.append(row)
    return rows


def _breaks(records: list[dict], lo: float, hi: float, slo: float) -> bool | None:
    """Whether more than 1 % of the requests sent in [lo, hi) broke the SLO (over it, or refused); None if none."""
    part = [r["status"] != 200 or r["latency_ms"] > slo for r in records if lo <= r["t"] < hi]
    return bool(np.mean(part) > 0.01) if part else None


def recovery_seconds(
    records: list[dict], *, phase: float, slo: float, bucket: float = 0.5, hold: float = 2.0
) -> float | None:
    """How long the slowdown took to absorb: seconds from the hog's start to the start of the first ``hold``
    seconds of the hog phase in which no 0.5-s bucket breaks the SLO (0 when the first ``hold`` seconds are
    clean); None if that never comes. A breach after that is a burst the policy met later: it counts in the
    violation rate and in ``last_breach_s``, not here."""
    for start in np.arange(phase, 2 * phase - hold + 1e-9, bucket):
        window = np.arange(start, start + hold - 1e-9, bucket)
        if not any(_breaks(records, lo, lo + bucket, slo) for lo in window):
            return float(start - phase)
    return None


def reaction_seconds(records: list[dict], *, phase: float, shallowest: int) -> float | None:
    """Seconds from the hog's start to the first request sent in the hog phase and served shallower than the
    depth that served the phase's first request (0 when that was already the shallowest); None if none was."""
    served = [r for r in records if phase <= r["t"] < 2 * phase and r["status"] == 200]
    if not served:
        return None
    if served[0]["depth"] == shallowest:
        return 0.0
    lower = [r["t"] for r in served if r["depth"] < served[0]["depth"]]
    return float(lower[0] - phase) if lower else None


def last_breach_seconds(records: list[dict], *, phase: float, slo: float, bucket: float = 0.5) -> float:
    """From the hog's start to the end of the last 0.5-s bucket of the hog phase that broke the SLO (0: none)."""
    edges = np.arange(phase, 2 * phase + 1e-9, bucket)
    bad = [hi for lo, hi in zip(edges[:-1], edges[1:]) if _breaks(records, lo, hi, slo)]
    return float(bad[-1] - phase) if bad else 0.0


def _post_timed(url: str, body: bytes) -> tuple[float, dict[str, float]]:
    """(client round trip in ms, the server's Server-Timing parts in ms) of one request."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/x-npy"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        elapsed = (time.perf_counter() - t0) * 1e3
        return elapsed, parse_server_timing(response.headers.get("Server-Timing", ""))


class KeepAlive:
    """One persistent HTTP/1.1 connection (as a production client, or requests.Session, keeps): the same POST
    as ``_post_timed`` without a TCP connect and urllib's request building per call."""

    def __init__(self, port: int) -> None:
        import http.client

        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post_timed(self, path: str, body: bytes) -> tuple[float, dict[str, float]]:
        t0 = time.perf_counter()
        self.connection.request("POST", path, body=body, headers={"Content-Type": "application/x-npy"})
        response = self.connection.getresponse()
        response.read()
        elapsed = (time.perf_counter() - t0) * 1e3
        return elapsed, parse_server_timing(response.getheader("Server-Timing", ""))

    def close(self) -> None:
        self.connection.close()


def _pin_this_thread(cpus: set[int]) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, cpus)  # 0: the calling thread (Linux)


def http_overhead(artifacts: Path, results: Path, body: bytes, depth: int, rounds: int = 200) -> dict:
    """``serve`` p50 at low load against ``DepthRuntime.predict`` p50 in-process: same depth, same image, the
    same core (the in-process runtime runs in a thread pinned where the server is), and interleaved one of each
    in turn, so a drift in the machine's speed hits both alike (and both start with caches as cold). Also
    ``predict`` back to back, as the bench times a graph, against the bench's p50 plus preprocessing. The
    server's Server-Timing header also splits each served request: ``rtt - infer`` is what HTTP, decoding and
    the thread hand-offs cost that request."""
    from ddnn_deploy.runtime import DepthRuntime
    from ddnn_deploy.runtime.inputs import to_pixels

    pixels = np.load(io.BytesIO(body))
    port = _free_port()
    server = _server(artifacts, results, ["--depth", str(depth)], port)
    url = f"http://127.0.0.1:{port}/v1/predict"
    served, in_process, beside_infer, parts = [], [], [], {"decode": [], "queue": [], "infer": []}
    kept, kept_beside_infer = [], []
    local = ThreadPoolExecutor(1, initializer=_pin_this_thread, initargs=(SERVER_CPUS,))
    keep_alive = None

    def preprocess_once(runtime: DepthRuntime) -> float:  # what predict adds to the bench's graph call
        t0 = time.perf_counter()
        runtime._preprocess.apply(to_pixels(pixels, runtime.manifest.input_shape)[0])
        return (time.perf_counter() - t0) * 1e3

    def predict_once(runtime: DepthRuntime) -> float:
        t0 = time.perf_counter()
        runtime.predict(pixels)
        return (time.perf_counter() - t0) * 1e3

    try:
        with DepthRuntime.from_artifacts(artifacts, depth=depth, threads=THREADS) as runtime:
            hot = [local.submit(predict_once, runtime).result() for _ in range(rounds + 10)][10:]  # back to back
            preprocessing = [local.submit(preprocess_once, runtime).result() for _ in range(rounds + 10)][10:]
            keep_alive = KeepAlive(port)
            for index in range(rounds + 10):  # the first 10 of each warm up
                local_ms = local.submit(predict_once, runtime).result()
                rtt, timing = _post_timed(url, body)
                kept_rtt, kept_timing = keep_alive.post_timed("/v1/predict", body)
                if index >= 10:
                    in_process.append(local_ms)
                    served.append(rtt)
                    beside_infer.append(rtt - timing["infer"])
                    kept.append(kept_rtt)
                    kept_beside_infer.append(kept_rtt - kept_timing["infer"])
                    for name in parts:
                        parts[name].append(timing[name])
    finally:
        if keep_alive is not None:
            keep_alive.close()
        local.shutdown()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    p50_http, p50_local = float(np.percentile(served, 50)), float(np.percentile(in_process, 50))
    return {
        "depth": depth,
        "rounds": rounds,
        "serve_p50_ms": p50_http,
        "predict_p50_ms": p50_local,
        "predict_back_to_back_p50_ms": float(np.percentile(hot, 50)),
        "preprocessing_p50_ms": float(np.percentile(preprocessing, 50)),
        "overhead_ms": p50_http - p50_local,
        "serve_keepalive_p50_ms": float(np.percentile(kept, 50)),
        "overhead_keepalive_ms": float(np.percentile(kept, 50)) - p50_local,
        "rtt_minus_infer_keepalive_p50_ms": float(np.percentile(kept_beside_infer, 50)),
        "rtt_minus_infer_p50_ms": float(np.percentile(beside_infer, 50)),
        "server_timing_p50_ms": {name: float(np.percentile(v, 50)) for name, v in parts.items()},
        "body_bytes": len(body),
    }


def saturation(artifacts: Path, results: Path, body: bytes, depth: int, max_batch: int, seconds: float) -> dict:
    """Closed loop, 16 clients, at one depth: served throughput with dynamic batching up to ``max_batch``."""
    port = _free_port()
    server = _server(
        artifacts, results, ["--depth", str(depth), "--max-batch", str(max_batch), "--max-wait-ms", "5"], port
    )
    url = f"http://127.0.0.1:{port}/v1/predict"
    done: list[float] = []
    stop = time.perf_counter() + seconds

    def client() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            if _request(url, body)[0] == 200:
                done.append((time.perf_counter() - t0) * 1e3)

    try:
        with ThreadPoolExecutor(16) as pool:
            for _ in range(16):
                pool.submit(client)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return {"max_batch": max_batch, "served_per_s": len(done) / seconds, "p50_ms": float(np.percentile(done, 50))}


def plot_timeline(
    runs: dict[str, list[dict]], *, phase: float, slo: float, title: str, out: Path, depths: list[int]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.6 * len(runs)), sharex=True, dpi=110)
    for ax, (name, records) in zip(np.atleast_1d(axes), runs.items()):
        ok = [r for r in records if r["status"] == 200]
        ax.scatter([r["t"] for r in ok], [r["latency_ms"] for r in ok], s=4, alpha=0.5, label="latency (ms)")
        rejected = [r["t"] for r in records if r["status"] != 200]
        if rejected:
            ax.scatter(rejected, [slo] * len(rejected), marker="x", color="red", s=10, label="503 / error")
        ax.axhline(slo, color="red", linestyle="--", linewidth=1, label=f"SLO {slo:.1f} ms")
        ax.axvspan(phase, 2 * phase, color="orange", alpha=0.12, label="CPU hog")
        ax.set_yscale("log")
        ax.set_ylabel(f"{name}\nlatency (ms)")
        depth_ax = ax.twinx()
        depth_ax.step([r["t"] for r in ok], [r["depth"] for r in ok], where="post", color="black", linewidth=1)
        depth_ax.set_ylabel("depth")
        served = sorted({r["depth"] for r in records if r["depth"] is not None} | set(depths))
        depth_ax.set_yticks(served)
        depth_ax.set_ylim(min(served) - 3, max(served) + 3)
        ax.legend(fontsize=7, loc="upper left")
    np.atleast_1d(axes)[-1].set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    print(f"wrote {out}")


COLUMNS = ("t_s", "latency_ms", "status", "depth", "infer_ms")  # one request of a timeline


def save_timelines(stem: str, traces: dict[str, dict[int, list[dict]]]) -> str:
    """Every request of every policy and trace, gzipped beside the summary (the demo's 130,000 requests would
    make a 40 MB JSON); returns the file's name."""

    def row(r: dict) -> list:
        return [round(r["t"], 4), round(r["latency_ms"], 3), r["status"], r["depth"], r["infer_ms"]]

    rows = {
        name: {str(seed): [row(r) for r in records] for seed, records in by_seed.items()}
        for name, by_seed in traces.items()
    }
    out = RESULTS / f"{stem}-timelines.json.gz"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with gzip.open(tmp, "wt") as f:
        json.dump(rows, f, separators=(",", ":"))
    os.replace(tmp, out)
    return out.name


def resummarize(model: str) -> None:
    """Recompute ``summary`` and ``per_trace`` (and the plot) of a saved run from its raw timelines: the same
    requests, the statistics' current definitions. Timelines kept inside the JSON (older runs) move to the
    gzipped file."""
    stem = f"slo_serving-{model}"
    data = json.loads((RESULTS / f"{stem}.json").read_text())
    keys = ["t" if c == "t_s" else c for c in data.get("timeline_columns", COLUMNS)]
    raw = data.pop("timelines", None)
    if raw is None:
        with gzip.open(RESULTS / data["timelines_file"], "rt") as f:
            raw = json.load(f)
    traces = {
        name: {seed: [dict(zip(keys, row)) for row in rows] for seed, rows in by_seed.items()}
        for name, by_seed in raw.items()
    }
    data["timeline_columns"] = list(COLUMNS)
    data["timelines_file"] = save_timelines(stem, traces)
    top1 = {int(d): v for d, v in data["bench_top1"].items()}
    phase, slo = data["phase_seconds"], data["slo_ms"]
    data["per_trace"] = {
        name: {seed: summarize(records, phase=phase, slo=slo, top1=top1) for seed, records in by_seed.items()}
        for name, by_seed in traces.items()
    }
    data["summary"] = {name: pooled(rows, phase=phase) for name, rows in data["per_trace"].items()}
    save_result(f"slo_serving-{model}", data)
    first = str(data["seeds"][0])
    plot_timeline(
        {name: by_seed[first] for name, by_seed in traces.items()},
        depths=sorted(top1),
        phase=phase,
        slo=slo,
        out=RESULTS / f"slo_serving-{model}.png",
        title=f"{model}: {data['rate_per_s']:.1f} req/s Poisson, SLO {slo:.1f} ms, CPU hog in the middle phase",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["resnet50", "demo"])
    parser.add_argument("--phase-seconds", type=float, default=15.0)
    parser.add_argument(
        "--load",
        type=float,
        default=0.6,
        help="offered load at full depth, as a fraction of the capacity measured through the server",
    )
    parser.add_argument("--slo-ms", type=float, default=None, help="default: 5x the served p50 at full depth")
    parser.add_argument("--policies", default="fixed,budget,adaptive,adaptive+shed")
    parser.add_argument(
        "--seeds",
        default="1",
        help="the Poisson traces to run every policy through (comma-separated seeds); the summary pools them, "
        "per_trace keeps each (one trace's luck, a burst at the shallowest depth, decides a 1 %% target)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="the server's inference threads (1 leaves the other "
        "core to the load generator; the hog then halves the server's core)",
    )
    parser.add_argument(
        "--batching",
        action="store_true",
        help="only measure throughput at saturation with dynamic batching (max batch 1 against 8)",
    )
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="only measure the HTTP overhead and predict against the bench (slo_serving-overhead-MODEL.json)",
    )
    parser.add_argument(
        "--resummarize",
        action="store_true",
        help="only recompute the summary and the plot of results/slo_serving-MODEL.json from its timelines",
    )
    args = parser.parse_args()
    if args.resummarize:
        resummarize(args.model)
        return
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, not {args.seeds!r}")
    global THREADS
    THREADS = args.threads
    if (os.cpu_count() or 1) > 1:  # the load generator (this process) stays off the server's core
        _pin(os.getpid(), set(range(os.cpu_count() or 1)) - SERVER_CPUS)
    from ddnn_deploy.formats.results import read_results
    from ddnn_deploy.measure.environment import capture

    with tempfile.TemporaryDirectory(prefix="ddnn-slo-") as tmp:
        artifacts, results_path, body = prepare(args.model, Path(tmp), args.threads)
        results = read_results(results_path)
        rows = [r for r in results.rows if r.status == "ok" and r.batch == 1 and r.precision == "fp32"]
        full = max(r.depth for r in rows)
        top1 = {r.depth: r.top1 for r in rows}
        if args.batching:
            runs = [saturation(artifacts, results_path, body, full, b, 3 * args.phase_seconds) for b in (1, 8)]
            save_result(
                f"slo_serving-batching-{args.model}",
                {
                    "benchmark": "slo_serving --batching",
                    "model": args.model,
                    "depth": full,
                    "clients": 16,
                    "server_threads": args.threads,
                    "runs": runs,
                    "environment": capture("onnxruntime", os.cpu_count()),
                },
            )
            for run in runs:
                print(f"max batch {run['max_batch']}: {run['served_per_s']:.1f} req/s, p50 {run['p50_ms']:.2f} ms")
            return
        overhead = http_overhead(artifacts, results_path, body, full)
        overhead["bench_p50_ms"] = next(r.latency("p50") for r in rows if r.depth == full)  # same threads
        overhead["predict_over_bench_plus_preprocessing"] = overhead["predict_back_to_back_p50_ms"] / (
            overhead["bench_p50_ms"] + overhead["preprocessing_p50_ms"]
        )
        if args.overhead:
            environment = capture("onnxruntime", os.cpu_count())
            save_result(f"slo_serving-overhead-{args.model}", {**overhead, "environment": environment})
            print(json.dumps(overhead, indent=1))
            return
        slo = args.slo_ms or 5 * overhead["serve_p50_ms"]
        rate = args.load * 1000.0 / overhead["serve_p50_ms"]
        print(f"full depth {full}: served p50 {overhead['serve_p50_ms']:.2f} ms -> {rate:.1f} req/s, SLO {slo:.1f} ms")
        choices = {
            "fixed": ["--depth", str(full)],
            "budget": ["--budget-ms", f"{0.7 * slo:.3f}", "--stat", "p99"],
            "adaptive": ["--slo-ms", f"{slo:.3f}"],
            "adaptive+shed": ["--slo-ms", f"{slo:.3f}", "--shed"],  # refuses at once what would miss the SLO
        }
        traces: dict[str, dict[int, list[dict]]] = {}
        for seed in seeds:  # trace by trace, every policy through the same one
            for name in args.policies.split(","):
                traces.setdefault(name, {})[seed] = run_policy(
                    name, choices[name], artifacts, results_path, body, rate=rate, phase=args.phase_seconds, seed=seed
                )
        per_trace = {
            name: {str(seed): summarize(records, phase=args.phase_seconds, slo=slo, top1=top1)
                   for seed, records in by_seed.items()}
            for name, by_seed in traces.items()
        }  # fmt: skip
        summary = {name: pooled(rows, phase=args.phase_seconds) for name, rows in per_trace.items()}
        runs = {name: by_seed[seeds[0]] for name, by_seed in traces.items()}  # the plot: the first trace
    stem = f"slo_serving-{args.model}"
    plot_timeline(
        runs,
        depths=sorted(top1),
        phase=args.phase_seconds,
        slo=slo,
        out=RESULTS / f"{stem}.png",
        title=f"{args.model}: {rate:.1f} req/s Poisson, SLO {slo:.1f} ms, CPU hog in the middle phase",
    )
    save_result(
        stem,
        {
            "benchmark": "slo_serving",
            "model": args.model,
            "slo_ms": slo,
            "rate_per_s": rate,
            "phase_seconds": args.phase_seconds,
            "server_threads": args.threads,
            "policies": choices,
            "bench_latency_p99_ms": {str(r.depth): r.latency("p99") for r in rows},
            "bench_top1": {str(k): v for k, v in top1.items()},
            "http_overhead": overhead,
            "seeds": seeds,
            "summary": summary,
            "per_trace": per_trace,
            "environment": capture("onnxruntime", os.cpu_count()),
            "timeline_columns": list(COLUMNS),
            "timelines_file": save_timelines(stem, traces),
        },
    )
    for name, by_seed in per_trace.items():
        for seed, phases in by_seed.items():
            for row in phases:
                print(
                    f"{name:13s} trace {seed} {row['phase']:9s} p50 {row['p50_ms']:8.2f} p99 {row['p99_ms']:8.2f} ms"
                    f"  over SLO {100 * (row['slo_violation_rate'] or 0):5.1f} %"
                    f"  503 {100 * (row['rejected_503_rate'] or 0):4.1f} %  busy {row['busy_fraction']:.2f}"
                    f"  depths {row['depths_served']}  recovery {row.get('recovery_s', '-')}"
                )
    for name, phases in summary.items():
        print(f"{name:13s} pooled: " + ", ".join(
            f"{row['phase']} {100 * (row['slo_violation_rate'] or 0):.2f} % over" for row in phases))  # fmt: skip


if __name__ == "__main__":
    main()
