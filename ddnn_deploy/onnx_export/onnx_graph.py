"""torch -> ONNX for one sub-net: named input/output, dynamic or static batch, metadata_props."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError, optional_import
from .settings import EXPORTERS, INPUT_NAME, OUTPUT_NAME


def export_onnx(
    module: torch.nn.Module,
    path: Path,
    *,
    input_shape: tuple[int, int, int],
    opset: int,
    batch: int | None,
    exporter: str,
) -> None:
    """Write ``module`` to ``path`` as a single self-contained ONNX file (no external data).

    The exporter is always chosen explicitly (``dynamo=`` is passed to ``torch.onnx.export``) and
    recorded by the caller: the two exporters produce different graphs.
    """
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    example = torch.zeros((batch or 1, *input_shape), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                do_constant_folding=True,
                dynamic_axes=None if batch else {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        else:
            optional_import("onnxscript", "the dynamo exporter (--exporter dynamo)")
            dynamic = None if batch else {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_shapes=dynamic,
                external_data=False,
                optimize=True,
            )
            program.save(str(path), external_data=False)


def set_metadata(model_proto: Any, metadata: dict[str, Any]) -> None:
    """Replace the model's metadata_props; non-string values are stored as JSON."""
    del model_proto.metadata_props[:]
    for key, value in metadata.items():
        entry = model_proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
