"""The selector's external data is exactly the file the manifest lists and hashes, checked by ddnn-deploy."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import onnx
import pytest

from ddnn_deploy.errors import ArtifactsError
from ddnn_deploy.formats.external_data import external_locations
from ddnn_deploy.formats.manifest import read_manifest


@pytest.fixture()
def artifacts(tiny_artifacts, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(tiny_artifacts, copy)
    return copy


def _selector(folder):
    data = json.loads((folder / "manifest.json").read_text())
    index = next(i for i, a in enumerate(data["artifacts"]) if a["kind"] == "selector")
    return data, index


def _rehash(folder, record):
    path = folder / record["path"]
    record["sha256"], record["bytes"] = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size


def test_the_exported_selector_reads_only_its_listed_data(artifacts):
    data, index = _selector(artifacts)
    entry = data["artifacts"][index]
    assert external_locations(artifacts / entry["path"]) == {entry["data"]["path"]}
    for other in data["artifacts"]:
        if other["kind"] == "depth":  # per-depth graphs hold their weights inline
            assert external_locations(artifacts / other["path"]) == set()
    read_manifest(artifacts)


def test_an_unlisted_data_file_is_never_read(artifacts):
    """The attack: list (and hash) a copy of the data, then swap the file the graph really reads."""
    data, index = _selector(artifacts)
    entry = data["artifacts"][index]
    real = artifacts / entry["data"]["path"]
    shutil.copy(real, artifacts / "copy.data")
    entry["data"]["path"] = "copy.data"
    (artifacts / "manifest.json").write_text(json.dumps(data))
    real.write_bytes(b"\0" * real.stat().st_size)  # other weights, same size: all hashes still pass
    with pytest.raises(ArtifactsError, match="not the listed copy.data"):
        read_manifest(artifacts)


def test_a_graph_pointing_outside_the_folder_is_refused(artifacts, tmp_path):
    data, index = _selector(artifacts)
    entry = data["artifacts"][index]
    graph_path = artifacts / entry["path"]
    model = onnx.load(str(graph_path), load_external_data=False)
    outside = tmp_path / "outside.data"
    shutil.copy(artifacts / entry["data"]["path"], outside)
    from ddnn_deploy.formats.external_data import _tensors

    for tensor in [t for t in _tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]:
        for kv in tensor.external_data:
            if kv.key == "location":
                kv.value = "../outside.data"
    onnx.save(model, str(graph_path))
    _rehash(artifacts, entry)
    (artifacts / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactsError, match=r"reads external data from \.\./outside\.data"):
        read_manifest(artifacts)


def test_a_symlinked_data_file_is_refused(tiny_artifacts, tmp_path):
    folder = tmp_path / "art"
    shutil.copytree(tiny_artifacts, folder)
    data, index = _selector(folder)
    listed = folder / data["artifacts"][index]["data"]["path"]
    shutil.move(listed, folder / "elsewhere.bin")
    os.symlink(folder / "elsewhere.bin", listed)  # same bytes, same hash, but a link
    with pytest.raises(ArtifactsError, match="symbolic link"):
        read_manifest(folder)


def test_a_graph_reading_unlisted_external_data_is_refused(tiny_artifacts, tmp_path):
    folder = tmp_path / "art"
    shutil.copytree(tiny_artifacts, folder)
    data, index = _selector(folder)
    del data["artifacts"][index]["data"]  # the graph still reads its data file: now unlisted
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactsError, match="does not list or hash"):
        read_manifest(folder)


def test_graphs_swapped_between_entries_are_refused_even_with_their_hashes_updated(tiny_artifacts, tmp_path):
    folder = tmp_path / "art"
    shutil.copytree(tiny_artifacts, folder)
    data = json.loads((folder / "manifest.json").read_text())
    d8, d14 = (next(a for a in data["artifacts"] if a["kind"] == "depth" and a["depth"] == d) for d in (8, 14))
    a, b = folder / d8["path"], folder / d14["path"]
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(a_bytes)
    _rehash(folder, d8)
    _rehash(folder, d14)
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactsError, match="says ddnn.depth is 14 but the manifest lists it as 8"):
        read_manifest(folder)
