"""bench --onnx: one bare graph, ours (identity from its metadata) or a foreign one (another input name, a static
batch), latency only; and what it refuses."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import cli_runner

from ddnn_deploy.cli import cli
from ddnn_deploy.errors import ArtifactsError
from ddnn_deploy.measure.bare import bench_onnx, describe_graph

onnx = pytest.importorskip("onnx")
QUICK = ["--warmup", "1", "--iterations", "5", "--duration", "0", "--threads", "1", "--batch-sizes", "1,2"]


def test_our_graph_keeps_its_identity(tiny_artifacts, tmp_path):
    graph = tiny_artifacts / "cifar_resnet20-d14.onnx"
    out = tmp_path / "bare.json"
    args = ["bench", "--onnx", str(graph), "--results", str(out), "--no-progress", *QUICK]
    result = cli_runner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [(r["depth"], r["batch"], r["status"], r["accuracy"]) for r in data["rows"]] == [
        (14, 1, "ok", None),
        (14, 2, "ok", None),
    ]
    assert data["arch"] == "cifar_resnet20" and data["rows"][0]["blocks"] == [2, 2, 2]
    assert data["artifacts"]["checkpoint_sha256"] and data["artifacts"]["onnx"] == str(graph)


def test_a_foreign_graph_with_another_input_name_and_a_static_batch(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixels", "w"], ["y"], pads=[1, 1, 1, 1])],
        "foreign",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        [weight],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert describe_graph(path)["input_name"] == "pixels" and describe_graph(path)["static_batch"] == 1
    results = bench_onnx(path, overrides={"batch_sizes": [1, 8], "min_iters": 5, "min_seconds": 0.0,
                                          "optional_backends": []}, progress=False)  # fmt: skip
    rows = {r.batch: r for r in results.rows}
    assert rows[1].status == "ok" and rows[1].depth == 0 and rows[8].status == "skipped"  # static batch 1


def test_what_bench_onnx_refuses(tiny_artifacts, tmp_path):
    run = cli_runner().invoke
    graph = str(tiny_artifacts / "cifar_resnet20-d8.onnx")
    both = run(cli, ["bench", "--onnx", graph, "--artifacts", str(tiny_artifacts)])
    assert both.exit_code == 2 and "one of the two" in both.stderr
    extra = run(cli, ["bench", "--onnx", graph, "--dataset", "fashion-mnist", "--depths", "8"])
    assert extra.exit_code == 2 and "drop --dataset, --depths" in extra.stderr
    over = run(cli, ["bench", "--onnx", graph, "--results", graph, *QUICK])
    assert over.exit_code == 2 and "would overwrite" in over.stderr
    (tmp_path / "x.onnx").write_bytes(b"not a graph")
    with pytest.raises(ArtifactsError, match="not an ONNX graph"):
        describe_graph(tmp_path / "x.onnx")
    # external data outside the graph's folder is refused before any runtime reads it
    selector = tiny_artifacts / "cifar_resnet20-selector.onnx"
    copy = tmp_path / "sel" / "selector.onnx"
    copy.parent.mkdir()
    shutil.copy(selector, copy)
    with pytest.raises(ArtifactsError, match="not a plain file beside it"):
        describe_graph(copy)
