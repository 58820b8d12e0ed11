"""The committed demo checkpoint: loads safely, keeps its recorded accuracy, exports and benches."""

import json
from pathlib import Path

import pytest

from ddnn_deploy.checkpoint import load_checkpoint
from ddnn_deploy.evaluation import evaluate_checkpoint

DEMO_CKPT = Path(__file__).resolve().parents[1] / "models" / "fmnist-resnet20-ddnn.pt"


@pytest.fixture(scope="module")
def demo():
    assert DEMO_CKPT.exists(), "models/fmnist-resnet20-ddnn.pt is missing: it is part of the repository"
    return load_checkpoint(DEMO_CKPT)


def test_demo_checkpoint_is_small_finished_and_documented(demo):
    assert DEMO_CKPT.stat().st_size < 5e6
    assert "resume" not in demo.training and demo.training["epochs_done"] == demo.training["settings"]["epochs"]
    assert [demo.spec.depth_of(c) for c in demo.depths] == [8, 14, 20]
    assert set(demo.bn_stats) == {"1-1-1", "2-2-2", "3-3-3"}
    assert all(m["n"] == 10000 for m in demo.metrics.values())


def test_demo_accuracy_on_a_test_subset_matches_the_recorded_full_test_set(demo, fashion_mnist_dir):
    result = evaluate_checkpoint(str(DEMO_CKPT), limit=2000)
    for row in result["depths"]:
        recorded = demo.metrics["-".join(map(str, row["blocks"]))]["top1"]
        assert abs(row["top1"] - recorded) < 1.5, (row, recorded)  # 2,000 images: about +-0.6 points sd
        assert row["top1"] > 90.0


def test_demo_exports_with_parity(tmp_path, fashion_mnist_dir):
    from ddnn_deploy.export import export

    manifest = export(DEMO_CKPT, tmp_path / "a", depths="8,20", simplify=False)
    for artifact in manifest["artifacts"]:
        assert artifact["parity"]["max_rel_err"] < 1e-5 and artifact["parity"]["real_samples"] == 64
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["class_names"][9] == "Ankle boot"
