"""FP16 copies of exported graphs: onnxruntime's float16 converter, then a topological re-sort.

Float32 input and output are kept (``keep_io_types``), so a caller feeds and reads the same arrays as
with the FP32 graph; back-ends that take precision from the graph (TensorRT 11's strongly typed
networks) run it in half precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DDNNError, optional_import


def write_fp16_copy(src: Path, dst: Path) -> None:
    """Convert the FP32 graph at ``src`` to FP16 (float32 input and output kept) and save it at ``dst``."""
    onnx = optional_import("onnx")
    float16 = optional_import("onnxruntime.transformers.float16", "FP16 export (--fp16)")
    proto = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    topological_sort(proto.graph)  # the converter appends its input casts at the end
    onnx.save(proto, str(dst))


def topological_sort(graph: Any) -> None:
    """Reorder ``graph.node`` in place so that every node comes after the producers of its inputs."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise DDNNError("the FP16 graph has a cycle or a missing input; export without --fp16")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
