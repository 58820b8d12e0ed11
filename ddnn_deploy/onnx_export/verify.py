"""Verification of an exported graph: onnx.checker (full check), an onnxruntime session, and parity
against PyTorch on real samples and on random inputs at several batch sizes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DDNNError, ParityError, optional_import


def check_model(path: Path) -> None:
    onnx = optional_import("onnx")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - any checker failure is reported in one line
        raise DDNNError(f"{path.name} fails onnx.checker: {str(exc).strip().splitlines()[0][:200]}") from None


def ort_session(path: Path, threads: int = 1):
    ort = optional_import("onnxruntime", "verifying exported graphs")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity_inputs(
    input_shape: tuple[int, ...], batch: int | None, real: np.ndarray | None, seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """(name, float32 NCHW input) pairs: real samples when available, random at several batch sizes."""
    rng = np.random.default_rng(seed)
    sizes = [batch] if batch else [1, 3, 8]
    feeds: list[tuple[str, np.ndarray]] = []
    if real is not None and len(real):
        if batch:
            real = real[: (len(real) // batch) * batch] if len(real) >= batch else None
        if real is not None and len(real):
            for start in range(0, len(real), batch or 32):
                feeds.append(("real", real[start : start + (batch or 32)]))
    for size in sizes:
        feeds.append((f"random-b{size}", rng.standard_normal((size, *input_shape)).astype(np.float32)))
    return feeds


def measure_parity(
    reference: Callable[[torch.Tensor], torch.Tensor],
    session: Any,
    feeds: list[tuple[str, np.ndarray]],
    extra_inputs: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Worst absolute error and the logits' scale, separately for real and random inputs; ``reference``
    maps a float32 NCHW batch to PyTorch's logits."""
    worst = {"real": 0.0, "random": 0.0}
    scale = 0.0
    with torch.no_grad():
        for name, x in feeds:
            expected = reference(torch.from_numpy(x)).numpy()
            got = session.run(None, {"input": x, **(extra_inputs or {})})[0]
            if got.shape != expected.shape:
                raise ParityError(f"output shape {got.shape} differs from PyTorch's {expected.shape}")
            if not np.isfinite(expected).all():
                raise ParityError(
                    "PyTorch's own logits are not finite (nan or inf): the checkpoint's weights or BN statistics "
                    "hold non-finite values; retrain or re-convert it"
                )
            if not np.isfinite(got).all():
                raise ParityError("the exported graph's logits are not finite (nan or inf) where PyTorch's are")
            kind = "real" if name == "real" else "random"
            worst[kind] = max(worst[kind], float(np.abs(got - expected).max()))
            scale = max(scale, float(np.abs(expected).max()))
    return {
        "max_abs_err_real": worst["real"],
        "max_abs_err_random": worst["random"],
        "logit_scale": scale,
        "max_rel_err": max(worst.values()) / max(scale, 1e-12),
    }
