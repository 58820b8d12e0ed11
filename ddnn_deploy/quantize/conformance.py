"""Does a QDQ graph follow TensorRT's explicit-quantization rules? A pure check on the ONNX graph.

What onnx-tensorrt accepts (NVIDIA's explicit-quantization guide and the parser's DequantizeLinear importer):
- every ``DequantizeLinear`` input is INT8 (8.5/8.6; 10.x adds FP8/INT4): no INT32 biases (onnxruntime's
  ``QuantizeBias``), no UINT8 activations;
- scales are positive and zero points are 0 (symmetric quantization);
- weights are quantized per output channel (axis 0 for convolution weights), activations per tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import optional_import


def _initializers(graph: Any) -> dict[str, np.ndarray]:
    numpy_helper = optional_import("onnx.numpy_helper")
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _check_node(node: Any, inits: dict[str, np.ndarray], produced_by_q: set[str]) -> list[str]:
    problems = []
    data, scale = node.input[0], node.input[1]
    zero_point = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if node.op_type == "DequantizeLinear" and data in inits and inits[data].dtype != np.int8:
        problems.append(f"{node.name}: dequantizes a {inits[data].dtype} constant (TensorRT takes INT8 only)")
    if node.op_type == "DequantizeLinear" and data not in inits and data not in produced_by_q:
        problems.append(f"{node.name}: its input {data} does not come from a QuantizeLinear")
    if zero_point is not None and zero_point in inits:
        zp = inits[zero_point]
        if zp.dtype != np.int8:
            problems.append(f"{node.name}: zero point of type {zp.dtype} (TensorRT wants signed INT8)")
        elif np.any(zp != 0):
            problems.append(f"{node.name}: non-zero zero point (TensorRT quantization is symmetric)")
    if scale in inits and np.any(inits[scale] <= 0):
        problems.append(f"{node.name}: non-positive scale")
    if node.op_type == "DequantizeLinear" and data in inits and inits[data].ndim == 4 and inits[scale].size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if axis != 0:
            problems.append(f"{node.name}: per-channel convolution weights quantized along axis {axis}, not 0")
    return problems


def tensorrt_qdq_problems(model: Any) -> list[str]:
    """Every way the graph breaks TensorRT's explicit-quantization rules (an empty list: it conforms)."""
    graph = model.graph
    inits = _initializers(graph)
    produced_by_q = {o for n in graph.node if n.op_type == "QuantizeLinear" for o in n.output}
    problems: list[str] = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problems.extend(_check_node(node, inits, produced_by_q))
    if not any(n.op_type == "DequantizeLinear" for n in graph.node):
        problems.append("the graph has no DequantizeLinear node: it is not quantized")
    return problems
