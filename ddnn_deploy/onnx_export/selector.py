"""One ONNX graph with a depth selector: inputs ``input`` and ``depth`` (int64 scalar), output ``logits``.

Construction: a chain of ``If`` nodes on ``depth == d``; each branch is the whole sub-net of one
depth, with ITS OWN initializers inside the branch (onnxruntime pre-packs branch-local weights;
weights referenced from the outer scope ran 60-75 % slower in a probe). Each depth keeps its own BN
statistics as a per-channel affine after an unbiased convolution, which onnxruntime folds into the
convolution when the session starts. Because the convolution weights are then byte-identical in
every branch that uses them, they are written ONCE to an external-data file beside the graph and
every branch points at the same bytes: the files are about the size of the full-depth graph, while
each branch runs like a per-depth graph.
A depth the graph lacks makes onnxruntime fail with an out-of-bounds Gather error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import optional_import
from .settings import INPUT_NAME, OUTPUT_NAME


def _onnx() -> Any:
    """The onnx package (with its helper and numpy_helper submodules loaded), or MissingDependencyError."""
    onnx = optional_import("onnx", "building the selector graph")
    optional_import("onnx.helper")
    optional_import("onnx.numpy_helper")
    return onnx


def _rename_graph(graph: Any, prefix: str, keep: set[str]) -> None:
    """Prefix every value name produced inside ``graph`` (initializers, node outputs, graph outputs)."""
    produced = {init.name for init in graph.initializer}
    for node in graph.node:
        produced.update(o for o in node.output if o)
    mapping = {name: f"{prefix}{name}" for name in produced if name not in keep}
    for init in graph.initializer:
        init.name = mapping.get(init.name, init.name)
    for node in graph.node:
        node.name = f"{prefix}{node.name}" if node.name else node.name
        node.input[:] = [mapping.get(i, i) for i in node.input]
        node.output[:] = [mapping.get(o, o) for o in node.output]
    for value in list(graph.output) + list(graph.value_info):
        value.name = mapping.get(value.name, value.name)


def _branch_from_model(model: Any, prefix: str) -> Any:
    """The per-depth model's graph as an If branch: no inputs (it reads the outer ``input``)."""
    onnx = _onnx()
    graph = onnx.GraphProto()
    graph.CopyFrom(model.graph)
    _rename_graph(graph, prefix, keep={INPUT_NAME})
    del graph.input[:]
    graph.name = prefix.rstrip("/")
    return graph


def _failing_branch(valid: list[int]) -> Any:
    """The last else-branch: ``Gather(valid_depths, depth + 1000000)`` is out of bounds, so onnxruntime
    fails with "idx=10000NN must be within ..." (NN = the depth asked for) instead of running a wrong depth."""
    onnx = _onnx()
    TensorProto, helper, numpy_helper = onnx.TensorProto, onnx.helper, onnx.numpy_helper
    inits = [
        numpy_helper.from_array(np.asarray(valid, dtype=np.float32), "invalid_depth/valid_depths"),
        numpy_helper.from_array(np.asarray(1_000_000, dtype=np.int64), "invalid_depth/offset"),
        numpy_helper.from_array(np.asarray([1, -1], dtype=np.int64), "invalid_depth/shape"),
    ]
    nodes = [
        helper.make_node("Add", ["depth", "invalid_depth/offset"], ["invalid_depth/index"], name="invalid_depth/index"),
        helper.make_node(
            "Gather",
            ["invalid_depth/valid_depths", "invalid_depth/index"],
            ["invalid_depth/value"],
            name="invalid_depth/gather_out_of_range",
        ),
        helper.make_node(
            "Reshape",
            ["invalid_depth/value", "invalid_depth/shape"],
            ["invalid_depth/logits"],
            name="invalid_depth/reshape",
        ),
    ]
    out = helper.make_tensor_value_info("invalid_depth/logits", TensorProto.FLOAT, None)
    return helper.make_graph(nodes, "invalid_depth", [], [out], initializer=inits)


def build_selector_model(models: dict[int, Any], *, opset: int, batch: int | None) -> Any:
    """Compose per-depth ONNX models (fold="none" exports) into one If-chain model."""
    onnx = _onnx()
    TensorProto, helper = onnx.TensorProto, onnx.helper
    depths = sorted(models)
    first = models[depths[0]]
    input_info = onnx.ValueInfoProto()
    input_info.CopyFrom(first.graph.input[0])
    output_info = onnx.ValueInfoProto()
    output_info.CopyFrom(first.graph.output[0])
    depth_info = helper.make_tensor_value_info("depth", TensorProto.INT64, [])

    # Built from the last depth backwards: the else-branch of depth i is the If of depth i+1.
    else_graph = _failing_branch(depths)
    for position in range(len(depths) - 1, -1, -1):
        depth = depths[position]
        then_graph = _branch_from_model(models[depth], f"d{depth}/")
        out_name = OUTPUT_NAME if position == 0 else f"select_{depth}/logits"
        const = helper.make_node(
            "Constant",
            [],
            [f"select_{depth}/value"],
            value=helper.make_tensor(f"select_{depth}/v", TensorProto.INT64, [], [depth]),
            name=f"select_{depth}/const",
        )
        equal = helper.make_node(
            "Equal", ["depth", f"select_{depth}/value"], [f"select_{depth}/cond"], name=f"select_{depth}/equal"
        )
        if_node = helper.make_node(
            "If",
            [f"select_{depth}/cond"],
            [out_name],
            name=f"select_{depth}/if",
            then_branch=then_graph,
            else_branch=else_graph,
        )
        if position == 0:
            main_nodes = [const, equal, if_node]
        else:
            branch_out = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)
            else_graph = helper.make_graph([const, equal, if_node], f"select_{depth}", [], [branch_out])
    graph = helper.make_graph(main_nodes, "ddnn_selector", [input_info, depth_info], [output_info])
    model = helper.make_model(
        graph, opset_imports=list(first.opset_import), producer_name="ddnn-deploy", ir_version=first.ir_version
    )
    return model


def _all_initializers(graph: Any):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.g.ByteSize():
                yield from _all_initializers(attr.g)
            for sub in attr.graphs:
                yield from _all_initializers(sub)


def save_deduplicated(model: Any, path: Path, data_name: str, min_bytes: int = 256) -> dict[str, int]:
    """Save ``model`` with every initializer of at least ``min_bytes`` moved to ONE external-data file
    beside it, storing identical tensors once. Returns byte counts (stored vs referenced)."""
    onnx = _onnx()
    TensorProto = onnx.TensorProto
    offsets: dict[str, tuple[int, int]] = {}
    referenced = stored = 0
    data_path = path.parent / data_name
    with open(data_path, "wb") as blob:
        for tensor in _all_initializers(model.graph):
            if tensor.data_location == TensorProto.EXTERNAL:
                continue
            raw = onnx.numpy_helper.to_array(tensor).tobytes()
            if len(raw) < min_bytes:
                continue
            referenced += len(raw)
            key = hashlib.sha256(raw).hexdigest() + f":{tensor.data_type}"
            if key not in offsets:
                pad = (-blob.tell()) % 64  # keep every tensor 64-byte aligned for mmap
                blob.write(b"\0" * pad)
                offsets[key] = (blob.tell(), len(raw))
                blob.write(raw)
                stored += len(raw)
            offset, length = offsets[key]
            dims, dtype, name = list(tensor.dims), tensor.data_type, tensor.name
            tensor.Clear()
            tensor.name, tensor.data_type = name, dtype
            tensor.dims.extend(dims)
            tensor.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(length))):
                entry = tensor.external_data.add()
                entry.key, entry.value = k, v
    onnx.save(model, str(path))
    return {"referenced_bytes": referenced, "stored_bytes": stored}
