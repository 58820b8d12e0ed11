"""``predict`` and ``serve``: the runtime on the command line (each builds a DepthRuntime, then one call)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import UsageError
from ..formats.profiles import BUILTIN_PROFILES, PRECISIONS
from ..formats.results import LATENCY_STATS
from ..runtime.server import MAX_BODY_BYTES, ServeSettings, check_listen


def _runtime_options(function):
    options = [
        click.option("--artifacts", required=True, help="Export directory (manifest.json + graphs)."),
        click.option(
            "--device",
            default="x86-cpu",
            show_default=True,
            help=f"Device profile ({', '.join(BUILTIN_PROFILES)}); its back-end runs the graphs.",
        ),
        click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True),
        click.option(
            "--results",
            "results_path",
            default=None,
            help="Bench results of these artifacts (for --budget-ms and --slo-ms).",
        ),
        click.option(
            "--budget-ms",
            type=float,
            default=None,
            help="Run the depth `pick` chooses for this budget (needs --results).",
        ),
        click.option("--depth", type=int, default=None, help="Run this depth (default: the deepest)."),
        click.option(
            "--stat",
            type=click.Choice(LATENCY_STATS),
            default="p99",
            show_default=True,
            help="Latency statistic of the results used by --budget-ms and --slo-ms.",
        ),
        click.option("--selector", "use_selector", is_flag=True, help="Run the one selector graph (FP32)."),
        click.option("--threads", type=int, default=None, help="CPU threads of the back-end (default: the profile's)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _load(artifacts, device, precision, results_path, depth, stat, use_selector, threads, **policy):
    from ..runtime import DepthRuntime

    return DepthRuntime.from_artifacts(
        artifacts,
        device=device,
        precision=precision,
        results=results_path,
        depth=depth,
        stat=stat,
        use_selector=use_selector,
        threads=threads,
        **policy,
    )


def _read_npy(path: str):
    """A .npy input, never unpickled; a damaged or foreign one is one line naming the file."""
    import numpy as np

    from ..errors import DataError

    if not Path(path).is_file():
        raise DataError(f"{path} is not a regular file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({' '.join(str(exc).split())[:160]})") from None


@click.command("predict")
@_runtime_options
@click.option("--top-k", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.argument("images", nargs=-1, required=True)
def predict_command(images, top_k, as_json, **options) -> None:
    """Predict the class of each IMAGE (PNG/JPEG files, or .npy arrays in pixel units)."""

    from .commands import print_table

    runtime = _load(**options)
    inputs = [_read_npy(path) if str(path).endswith(".npy") else path for path in images]
    predictions = []
    for path, item in zip(images, inputs):
        for prediction in runtime.predict([item], top_k=top_k):
            prediction.path = path
            predictions.append(prediction)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "predictions": [
                        {
                            k: v
                            for k, v in p.to_dict().items()
                            if k in ("path", "label", "class_name", "score", "depth", "latency_ms", "top_k")
                        }
                        for p in predictions
                    ]
                },
                indent=2,
            )
        )
        return
    print_table(
        f"{options['artifacts']} ({runtime.precision}, policy {runtime.policy.describe()['policy']})",
        ["path", "class", "score", "depth", "ms"],
        [[p.path, p.class_name, f"{p.score:.3f}", p.depth, f"{p.latency_ms:.2f}"] for p in predictions],
    )


@click.command("serve")
@_runtime_options
@click.option("--slo-ms", type=float, default=None, help="Adapt the depth to keep the latency tail under this SLO.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--max-queue",
    type=int,
    default=ServeSettings.max_queue,
    show_default=True,
    help="Requests allowed to wait; beyond it the answer is 503 with Retry-After.",
)
@click.option(
    "--max-batch",
    type=int,
    default=ServeSettings.max_batch,
    show_default=True,
    help="Images grouped into one inference call (dynamic batching when > 1).",
)
@click.option(
    "--max-wait-ms",
    type=float,
    default=ServeSettings.max_wait_ms,
    show_default=True,
    help="How long the batcher waits to fill a batch.",
)
@click.option("--max-body-bytes", type=int, default=MAX_BODY_BYTES, show_default=True)
@click.option(
    "--shed",
    is_flag=True,
    help="With --slo-ms: answer 503 (Retry-After) at once to a request predicted to finish past the SLO.",
)
def serve_command(slo_ms, host, port, max_queue, max_batch, max_wait_ms, max_body_bytes, shed, **options) -> None:
    """Serve predictions over HTTP (POST /v1/predict, GET /healthz, GET /metrics)."""
    from ..runtime.server import serve

    if shed and slo_ms is None:
        raise UsageError("--shed refuses requests that would miss the SLO: give --slo-ms too")
    settings = ServeSettings(
        max_queue=max_queue, max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_bytes=max_body_bytes,
        shed_ms=slo_ms if shed else None,
    )  # fmt: skip
    check_listen(host, port)  # before minutes of loading, not after
    runtime = _load(**options, slo_ms=slo_ms)
    click.echo(
        f"serving {options['artifacts']} on http://{host}:{port} (depths {runtime.depths}, "
        f"{runtime.policy.describe()})",
        err=True,
    )
    serve(runtime, host=host, port=port, settings=settings)
