"""DepthRuntime on real exported graphs, the predict/serve commands, and the real HTTP server on loopback."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_runner

from ddnn_deploy.cli import cli
from ddnn_deploy.data import Preprocess, load_dataset
from ddnn_deploy.errors import ArtifactsError, DataError, ResultsError, UsageError
from ddnn_deploy.formats.results import parse_results, write_results
from ddnn_deploy.runners.accuracy import runner_accuracy
from ddnn_deploy.runners.onnxruntime_runner import OrtRunner
from ddnn_deploy.runtime import DepthRuntime
from ddnn_deploy.runtime.server import ServeSettings, parse_server_timing

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def images(fashion_mnist_dir):
    return load_dataset("fashion-mnist", "test").subset(64, seed=4)


@pytest.fixture(scope="module")
def runtime(tiny_artifacts):
    with DepthRuntime.from_artifacts(tiny_artifacts) as rt:
        yield rt


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _results_for(artifacts: Path, sha: str | None = None) -> dict:
    manifest = json.loads((artifacts / "manifest.json").read_text())
    lat = {"mean": 0.3, "std": 0.01, "min": 0.2, "p50": 0.3, "p90": 0.35, "p95": 0.4, "p99": 0.45, "max": 0.5, "n": 9}
    rows = [
        {
            "depth": d,
            "blocks": [d // 6] * 3,
            "kind": "depth",
            "precision": "fp32",
            "backend": "onnxruntime",
            "batch": 1,
            "status": "ok",
            "latency_ms": {k: v * (d / 8) if k != "n" else v for k, v in lat.items()},
            "accuracy": {"top1": 50.0 + d, "top5": 90.0, "n": 10},
        }
        for d in (8, 14)
    ]
    return {
        "format": "ddnn-deploy.bench",
        "version": 1,
        "arch": manifest["arch"],
        "device": {"profile": {"name": "x86-cpu"}, "environment": {}},
        "settings": {},
        "artifacts": {"path": str(artifacts), "checkpoint_sha256": sha or manifest["checkpoint"]["sha256"]},
        "rows": rows,
    }


def test_predictions_match_the_bench_accuracy_path(runtime, tiny_artifacts, images):
    assert runtime.depths == [8, 14] and runtime.depth == 14
    for depth in runtime.depths:
        preds = runtime.predict(images.images, depth=depth)
        assert len(preds) == len(images) and {p.depth for p in preds} == {depth}
        with OrtRunner(tiny_artifacts / f"cifar_resnet20-d{depth}.onnx") as runner:
            data = load_dataset("fashion-mnist", "test").subset(64, seed=4)
            data.preprocess = Preprocess.from_dict(runtime.manifest.preprocess.to_json_dict())
            reference = runner_accuracy(runner, data)
        top1 = 100.0 * np.mean([p.label == y for p, y in zip(preds, images.labels)])
        assert top1 == pytest.approx(reference["top1"])
        assert all(0.0 <= p.score <= 1.0 and p.class_name == images.classes[p.label] for p in preds)


def test_every_input_form_gives_the_same_answer(runtime, images, tmp_path):
    pixels = images.images[0]  # [1, 28, 28] uint8
    path = tmp_path / "one.png"
    path.write_bytes(_png(pixels[0]))
    forms = [
        pixels,
        pixels[0],
        pixels.transpose(1, 2, 0),
        pixels[None].astype(np.float32),
        str(path),
        path,
        _png(pixels[0]),
        Image.fromarray(pixels[0]),
        np.repeat(pixels, 3, axis=0),
    ]
    answers = [runtime.predict(form, depth=8, top_k=3)[0] for form in forms]
    assert len({a.label for a in answers}) == 1
    scores = [a.score for a in answers]
    assert max(scores) - min(scores) < 1e-5
    assert [t["label"] for t in answers[0].top_k][0] == answers[0].label and len(answers[0].top_k) == 3
    assert runtime.predict(str(path))[0].path == str(path)
    bigger = runtime.predict(Image.fromarray(pixels[0]).resize((56, 56)), depth=8)[0]  # resized like the bench
    assert 0 <= bigger.label < 10


def test_selector_mode_and_set_depth(tiny_artifacts, images):
    selector = DepthRuntime.from_artifacts(tiny_artifacts, use_selector=True)
    per_depth = DepthRuntime.from_artifacts(tiny_artifacts)
    with selector, per_depth:
        for depth in (8, 14):
            a = selector.predict(images.images[:16], depth=depth)
            b = per_depth.predict(images.images[:16], depth=depth)
            assert [p.label for p in a] == [p.label for p in b]
            assert np.allclose([p.score for p in a], [p.score for p in b], atol=1e-5)
        per_depth.set_depth(8)
        assert per_depth.depth == 8 and per_depth.predict(images.images[:1])[0].depth == 8
        with pytest.raises(UsageError, match=r"depth 20 is not loaded; loaded depths: \[8, 14\]"):
            per_depth.set_depth(20)


def test_bad_inputs_are_one_line_errors(runtime, tmp_path):
    with pytest.raises(DataError, match="not an image"):
        runtime.predict(b"not a png")
    truncated = _png(np.zeros((28, 28), np.uint8))[:40]
    with pytest.raises(DataError, match="not a readable image|not an image"):
        runtime.predict(truncated)
    with pytest.raises(DataError, match="is not \\[H,W\\]"):
        runtime.predict(np.zeros((2, 5, 28, 28)))
    with pytest.raises(DataError, match="NaN"):
        runtime.predict(np.full((28, 28), np.nan))
    with pytest.raises(UsageError, match="top_k must be a positive integer"):
        runtime.predict(np.zeros((28, 28)), top_k=0)
    with pytest.raises(UsageError, match="inputs\\[0\\] is a dict"):
        runtime.predict([{"x": 1}])
    bomb = tmp_path / "bomb.png"
    Image.new("L", (7000, 7000)).save(bomb)  # 49 MP of zeros: a few KB on disk
    with pytest.raises(DataError, match="more than 40000000 pixels"):
        runtime.predict(bomb)


def test_policies_from_results_and_results_of_another_model(tiny_artifacts, tmp_path):
    results = tmp_path / "r.json"
    write_results(_results_for(tiny_artifacts), results)
    with DepthRuntime.from_artifacts(tiny_artifacts, results=results, budget_ms=0.5, stat="p90") as rt:
        assert rt.depth == 8 and rt.policy.describe()["policy"] == "fixed"  # 14's p90 is 0.61 ms
    with DepthRuntime.from_artifacts(tiny_artifacts, results=results, slo_ms=2.0) as rt:
        assert rt.policy.describe()["policy"] == "adaptive" and rt.depth == 14
    other = tmp_path / "other.json"
    write_results(_results_for(tiny_artifacts, sha="0" * 64), other)
    with pytest.raises(ResultsError, match="measured on another model"):
        DepthRuntime.from_artifacts(tiny_artifacts, results=other, slo_ms=2.0)
    with pytest.raises(UsageError, match="needs the bench results"):
        DepthRuntime.from_artifacts(tiny_artifacts, slo_ms=2.0)
    with pytest.raises(UsageError, match="positive number of milliseconds"):
        DepthRuntime.from_artifacts(tiny_artifacts, results=results, slo_ms=-1.0)
    with pytest.raises(UsageError, match="no int8 graph"):
        DepthRuntime.from_artifacts(tiny_artifacts, precision="int8")
    assert parse_results(_results_for(tiny_artifacts)).rows[0].depth == 8
    for threads in (0, 10**20):
        with pytest.raises(UsageError, match="threads must be an integer in 1..1024"):
            DepthRuntime.from_artifacts(tiny_artifacts, threads=threads)
    with DepthRuntime.from_artifacts(tiny_artifacts, threads=1, depth=8) as rt:
        assert rt.depth == 8 and rt.predict(np.zeros((28, 28)))[0].depth == 8


def test_tampered_artifacts_are_refused(tiny_artifacts, tmp_path):
    import shutil

    copy = tmp_path / "a"
    shutil.copytree(tiny_artifacts, copy)
    graph = copy / "cifar_resnet20-d8.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(ArtifactsError, match="no longer matches the sha256"):
        DepthRuntime.from_artifacts(copy)


def test_predict_command(tiny_artifacts, images, tmp_path):
    path = tmp_path / "shoe.png"
    path.write_bytes(_png(images.images[0][0]))
    npy = tmp_path / "two.npy"
    np.save(npy, images.images[:2])
    result = cli_runner().invoke(
        cli, ["predict", "--artifacts", str(tiny_artifacts), "--depth", "8", "--json", str(path), str(npy)]
    )
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)["predictions"]
    assert len(predictions) == 3 and {p["depth"] for p in predictions} == {8}
    assert set(predictions[0]) >= {"path", "label", "class_name", "score", "depth", "latency_ms"}
    table = cli_runner().invoke(cli, ["predict", "--artifacts", str(tiny_artifacts), str(path)])
    assert table.exit_code == 0 and "shoe.png" in table.stdout
    for args, code, text in (
        (["--depth", "20", str(path)], 2, "depth 20 is not loaded"),
        ([str(tmp_path / "missing.png")], 4, "no such file"),
        (["--budget-ms", "1", str(path)], 2, "needs the bench results"),
    ):
        bad = cli_runner().invoke(cli, ["predict", "--artifacts", str(tiny_artifacts), *args])
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert bad.exit_code == code and len(lines) == 1 and text in lines[0], bad.output


# ------------------------------------------------------------------------------------------- the HTTP server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The real app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, runtime, **settings):
        import uvicorn

        from ddnn_deploy.runtime.server import ServeSettings, create_app

        self.port = _free_port()
        config = uvicorn.Config(
            create_app(runtime, ServeSettings(**settings)), host="127.0.0.1", port=self.port, log_level="error"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=20)

    def request(self, path, body=None, content_type="image/png", timeout=20):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=body,
            method="POST" if body is not None else "GET",
            headers={"Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)


def test_server_timing_header_round_trips():
    from ddnn_deploy.runtime.server import server_timing

    assert parse_server_timing(server_timing({"decode": 0.25, "infer": 78.1})) == {"decode": 0.25, "infer": 78.1}
    assert parse_server_timing('cache;desc="hit", db;dur=53, app;dur=47.2;desc=x, bad;dur=nan?') == {
        "db": 53.0,
        "app": 47.2,
    }


def test_server_predicts_reports_health_and_metrics(runtime, images):
    with Server(runtime) as server:
        status, body, headers = server.request("/v1/predict", _png(images.images[0][0]))
        assert status == 200, body
        answer = json.loads(body)
        timing = parse_server_timing(headers["server-timing"])
        assert set(timing) == {"decode", "queue", "infer"} and all(v >= 0 for v in timing.values())
        # the parts fit inside the whole (each part is rounded to 3 decimals: up to 0.5 us each)
        assert sum(timing.values()) <= answer["latency_ms"] + 2e-3
        expected = runtime.predict(images.images[0])[0]
        assert answer["predictions"][0]["label"] == expected.label and answer["depth"] == runtime.depth
        assert answer["predictions"][0]["score"] == pytest.approx(expected.score, abs=1e-6)
        npy = io.BytesIO()
        np.save(npy, images.images[:5])
        status, body, _ = server.request("/v1/predict?depth=8", npy.getvalue(), "application/x-npy")
        assert status == 200 and len(json.loads(body)["predictions"]) == 5 and json.loads(body)["depth"] == 8
        with ThreadPoolExecutor(8) as pool:  # concurrent clients
            statuses = list(pool.map(lambda i: server.request("/v1/predict", _png(images.images[i][0]))[0], range(32)))
        assert statuses == [200] * 32
        health = json.loads(server.request("/healthz")[1])
        assert health["status"] == "ok" and health["depth"] == runtime.depth and health["policy"]["policy"] == "fixed"
        metrics = server.request("/metrics")[1].decode()
        assert 'ddnn_requests_total{status="200"} 34.0' in metrics
        assert 'ddnn_request_latency_seconds_count{depth="8"} 1.0' in metrics and "ddnn_queue_length" in metrics
        assert "/v1/predict" in json.loads(server.request("/openapi.json")[1])["paths"]


def test_server_bad_requests_are_json_4xx_and_it_keeps_serving(runtime, images):
    png = _png(images.images[0][0])
    with Server(runtime, max_body_bytes=4096) as server:
        cases = [
            (b"garbage", "image/png", 400, "not an image"),
            (png[:50], "image/png", 400, "image"),
            (b"x" * 5000, "image/png", 413, "limit"),
            (png, "text/plain", 415, "not supported"),
            (b"\x93NUMPY broken", "application/x-npy", 400, "not a .npy"),
            (png, "image/png?depth", 415, "not supported"),
        ]
        for body, content_type, code, text in cases:
            status, answer, _ = server.request("/v1/predict", body, content_type)
            assert status == code and text in json.loads(answer)["error"], (content_type, status, answer)
        status, answer, _ = server.request("/v1/predict?depth=20", png)
        assert status == 400 and "not loaded" in json.loads(answer)["error"]
        status, answer, _ = server.request("/v1/predict?depth=eight", png)
        assert status == 422 and "error" in json.loads(answer)
        assert server.request("/v1/predict", png)[0] == 200


def test_a_full_queue_answers_503_with_retry_after(tiny_artifacts, images):
    with DepthRuntime.from_artifacts(tiny_artifacts) as slow:
        real = slow.run_batches
        slow.run_batches = lambda pixels, depth: (time.sleep(0.3), real(pixels, depth))[1]
        png = _png(images.images[0][0])
        with Server(slow, max_queue=1) as server, ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: server.request("/v1/predict", png), range(6)))
        codes = sorted(a[0] for a in answers)
        assert 200 in codes and 503 in codes, codes
        rejected = next(a for a in answers if a[0] == 503)
        assert rejected[2].get("retry-after") == "1" and "queue is full" in json.loads(rejected[1])["error"]


def test_shedding_refuses_at_once_what_would_miss_the_slo(tiny_artifacts, images):
    with DepthRuntime.from_artifacts(tiny_artifacts) as slow:
        real = slow.run_batches
        slow.run_batches = lambda pixels, depth: (time.sleep(0.2), real(pixels, depth))[1]
        png = _png(images.images[0][0])
        with Server(slow, shed_ms=500.0) as server:
            assert server.request("/v1/predict", png)[0] == 200  # alone: about 200 ms, within the SLO
            with ThreadPoolExecutor(6) as pool:  # six at once: the later ones would wait 600-1200 ms
                started = time.perf_counter()
                answers = list(pool.map(lambda _: server.request("/v1/predict", png), range(6)))
            elapsed = time.perf_counter() - started
            metrics = server.request("/metrics")[1].decode()
            slow.run_batches = lambda pixels, depth: (time.sleep(0.6), real(pixels, depth))[1]
            assert server.request("/v1/predict", png)[0] == 200  # one call past the SLO (a stall) ...
            slow.run_batches = real
            # ... does not lock the depth out: with nothing ahead a request always runs, and refreshes the estimate
            assert [server.request("/v1/predict", png)[0] for _ in range(3)] == [200] * 3
        codes = [a[0] for a in answers]
        assert 2 <= codes.count(200) <= 3 and codes.count(503) == 6 - codes.count(200), codes
        rejected = next(a for a in answers if a[0] == 503)
        assert rejected[2].get("retry-after") == "1" and "past the SLO of 500 ms" in json.loads(rejected[1])["error"]
        assert 'ddnn_rejected_total{reason="slo"}' in metrics
        assert elapsed < 1.2  # the refused ones did not queue
    with pytest.raises(UsageError, match="SLO must be a positive number of milliseconds, not 0.0"):
        ServeSettings(shed_ms=0.0)


def test_dynamic_batching_groups_requests(tiny_artifacts, images):
    with DepthRuntime.from_artifacts(tiny_artifacts) as rt:
        with Server(rt, max_batch=8, max_wait_ms=50.0) as server, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: server.request("/v1/predict", _png(images.images[i][0])), range(16)))
            metrics = server.request("/metrics")[1].decode()
        assert [a[0] for a in answers] == [200] * 16
        expected = [p.label for p in rt.predict(images.images[:16])]
        assert [json.loads(a[1])["predictions"][0]["label"] for a in answers] == expected
        calls = float(
            next(line.split()[-1] for line in metrics.splitlines() if line.startswith("ddnn_batch_images_count"))
        )
        assert calls < 16  # at least some requests shared an inference call


def test_serve_command_shuts_down_cleanly_on_sigterm(tiny_artifacts):
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ddnn_deploy", "serve", "--artifacts", str(tiny_artifacts), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert json.loads(response.read())["status"] == "ok"
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the server did not come up: " + process.stderr.read()[-2000:])
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status says what ended it
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    bad = subprocess.run(
        [sys.executable, "-m", "ddnn_deploy", "serve", "--artifacts", str(tiny_artifacts), "--slo-ms", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), bad.stderr
    shed = subprocess.run(
        [sys.executable, "-m", "ddnn_deploy", "serve", "--artifacts", str(tiny_artifacts), "--shed"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shed.returncode == 2 and shed.stderr.strip().count("\n") == 0 and "give --slo-ms too" in shed.stderr


def test_a_port_in_use_is_one_line_before_anything_loads():
    from ddnn_deploy.runtime.server import check_listen

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}: .*choose another"):
            check_listen("127.0.0.1", port)
    with pytest.raises(UsageError, match="port must be 0-65535"):
        check_listen("127.0.0.1", 70000)
    check_listen("127.0.0.1", _free_port())  # a free port passes


def test_npy_bodies_load_as_numpy_loads_them_and_bad_ones_are_refused():
    from ddnn_deploy.runtime.server import load_npy

    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 255, (1, 3, 8, 8), dtype=np.uint8),
        np.asfortranarray(rng.random((3, 4))),
        rng.random(4).astype(">f4"),
        np.array(5.0),
        np.zeros((0, 3), np.uint8),
    ]
    for array in arrays * 2:  # the second time from the header cache
        body = io.BytesIO()
        np.save(body, array)
        got = load_npy(body.getvalue())
        assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)
        assert got.flags.writeable
    body = io.BytesIO()
    np.save(body, rng.random((2, 5)))
    data = body.getvalue()
    objects = io.BytesIO()
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for bad, reason in [
        (data[:-3], "truncated"),
        (data[:12], None),
        (b"\x93NUMPY broken", None),
        (objects.getvalue(), None),
    ]:
        with pytest.raises((ValueError, OSError, EOFError), match=reason):
            load_npy(bad)
