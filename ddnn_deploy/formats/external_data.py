"""External data of an exported graph is the manifest's, checked by ddnn-deploy itself.

An ONNX graph may keep its weights in another file (the selector graph does: ``NAME.onnx.data``); the
runtime then opens whatever file the graph's ``location`` entries name. The manifest hashes the file it
lists in ``data``, so every location in the graph must be exactly that file: an unlisted file, a path that
leaves the folder, or a symlink would be read unverified. Graphs without a ``data`` entry must hold all their
weights inline. This does not rely on onnxruntime's or onnx's own checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from ..errors import ArtifactsError, optional_import


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of ``graph`` that may carry external data: initializers, sparse initializers and tensor
    attributes (Constant nodes), in the graph and in every subgraph (``If``/``Loop`` branches)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)


def _load(graph_path: Path) -> Any:
    """The graph's protobuf without its external data, or None when the file is not an ONNX graph (no runtime
    will load it either, and its runner reports that in its own row)."""
    onnx = optional_import("onnx", "checking a graph's external data")
    try:
        return onnx.load(str(graph_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf's decode errors have no common public base
        return None


def external_locations(graph_path: Path, model: Any = None) -> set[str]:
    """The ``location`` of every externally stored tensor in the graph at ``graph_path`` (nothing is loaded
    from those locations)."""
    onnx = optional_import("onnx", "checking a graph's external data")
    model = model if model is not None else _load(graph_path)
    if model is None:
        return set()
    locations = set()
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            locations.add(entries.get("location", ""))
    return locations


def check_graph(root: Path, graph: str, data: Optional[str], where: str, expect: dict[str, Any]) -> None:
    """Refuse a graph whose external data is not exactly the manifest's ``data`` file, or whose own metadata
    (``ddnn.kind``, ``ddnn.depth``, ``ddnn.checkpoint_sha256``, where the graph has them) contradicts its
    manifest entry: graphs swapped between entries, with their hashes updated, are caught here."""
    model = _load(root / graph)
    if model is None:
        return
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    for key, wanted in expect.items():
        if key not in metadata:
            continue
        try:
            found = json.loads(metadata[key]) if key == "ddnn.depth" else metadata[key]
        except ValueError:
            found = metadata[key]
        if found != wanted:
            raise ArtifactsError(
                f"{where}: {graph} says {key} is {found!r} but the manifest lists it as {wanted!r}: the graph is "
                "not the one exported for this entry; refusing (re-export)"
            )
    check_external_data(root, graph, data, where, model)


def check_external_data(root: Path, graph: str, data: Optional[str], where: str, model: Any = None) -> None:
    """Refuse a graph whose external data is not exactly the manifest's ``data`` file of the same folder."""
    locations = external_locations(root / graph, model)
    if not locations:
        return
    if data is None:
        raise ArtifactsError(
            f"{where}: {graph} reads external data ({', '.join(sorted(locations))}) that the manifest does not "
            "list or hash; refusing (re-export)"
        )
    wrong = sorted(location for location in locations if location != data)
    if wrong:
        raise ArtifactsError(
            f"{where}: {graph} reads external data from {', '.join(wrong)}, not the listed {data}; refusing (re-export)"
        )
    path = root / data
    if path.is_symlink() or any(parent.is_symlink() for parent in path.parents if root in parent.parents):
        raise ArtifactsError(f"{where}: the external data {data} is a symbolic link; refusing (re-export)")
    if Path(data).is_absolute() or ".." in Path(data).parts or path.resolve().parent != root.resolve():
        raise ArtifactsError(f"{where}: the external data {data} is not a file of {root}; refusing (re-export)")
