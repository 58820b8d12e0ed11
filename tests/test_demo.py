"""The built-in demo: its checkpoint and calibration sample (found through ddnn_deploy.resources, as an
installed wheel finds them), the checkpoint's recorded accuracy and export, and ``ddnn-deploy demo``."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ddnn_deploy.checkpoint import load_checkpoint
from ddnn_deploy.cli.demo_cmd import STEPS, demo, parse_steps
from ddnn_deploy.cli.main import cli
from ddnn_deploy.evaluation import evaluate_checkpoint
from ddnn_deploy.resources import calibration_sample, demo_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DEMO_CKPT = demo_checkpoint()


@pytest.fixture(scope="module")
def demo_ckpt():
    return load_checkpoint(DEMO_CKPT)


def run_demo(*args):
    from ddnn_deploy.cli import commands  # noqa: F401  (registers the commands)

    if "demo" not in cli.commands:  # the CLI registers it; add it here too in case this runs before that
        cli.add_command(demo)
    return CliRunner().invoke(cli, ["demo", *map(str, args)])


def test_a_checkout_finds_the_committed_files_in_the_repository_folders():
    # In a checkout (or an editable install) the one committed copy is used; tests/test_wheel.py
    # checks that an installed wheel finds its own copy instead.
    assert DEMO_CKPT == ROOT / "models" / "fmnist-resnet20-ddnn.pt"
    assert calibration_sample("fashion-mnist") == ROOT / "calibration" / "fashion-mnist-512.npz"
    assert calibration_sample("cifar10") is None


def test_the_default_calibration_sample_is_512_training_images():
    import numpy as np

    from ddnn_deploy.quantize.reader import DEFAULT_SAMPLES, load_npz_sample

    assert DEFAULT_SAMPLES.get("fashion-mnist") == calibration_sample("fashion-mnist")
    assert DEFAULT_SAMPLES.get("cifar10") is None and DEFAULT_SAMPLES.get("") is None
    images = load_npz_sample(DEFAULT_SAMPLES["fashion-mnist"])
    assert images.shape == (512, 1, 28, 28) and images.dtype == np.uint8


def test_demo_checkpoint_is_small_finished_and_documented(demo_ckpt):
    assert DEMO_CKPT.stat().st_size < 5e6
    assert "resume" not in demo_ckpt.training
    assert demo_ckpt.training["epochs_done"] == demo_ckpt.training["settings"]["epochs"]
    assert [demo_ckpt.spec.depth_of(c) for c in demo_ckpt.depths] == [8, 14, 20]
    assert set(demo_ckpt.bn_stats) == {"1-1-1", "2-2-2", "3-3-3"}
    assert all(m["n"] == 10000 for m in demo_ckpt.metrics.values())


def test_demo_accuracy_on_a_test_subset_matches_the_recorded_full_test_set(demo_ckpt, fashion_mnist_dir):
    result = evaluate_checkpoint(str(DEMO_CKPT), limit=2000)
    for row in result["depths"]:
        recorded = demo_ckpt.metrics["-".join(map(str, row["blocks"]))]["top1"]
        assert abs(row["top1"] - recorded) < 1.5, (row, recorded)  # 2,000 images: about +-0.6 points sd
        assert row["top1"] > 90.0


def test_demo_exports_with_parity(tmp_path, fashion_mnist_dir):
    from ddnn_deploy import export

    manifest = export(DEMO_CKPT, tmp_path / "a", depths="8,20", simplify=False).to_json_dict()
    for artifact in manifest["artifacts"]:
        assert artifact["parity"]["max_rel_err"] < 1e-5 and artifact["parity"]["real_samples"] == 64
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["class_names"][9] == "Ankle boot"


def test_demo_command_runs_the_chosen_steps_in_order_and_prints_their_tables(fashion_mnist_dir, tmp_path):
    result = run_demo("--steps", "eval,info", "--limit", 200, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    shown = [line for line in lines if line.startswith("$ ddnn-deploy ")]
    assert shown[0].startswith("$ ddnn-deploy info --ckpt ") and shown[0].endswith("fmnist-resnet20-ddnn.pt")
    assert shown[1].startswith("$ ddnn-deploy eval --ckpt ") and shown[1].endswith(" --limit 200")
    assert len(shown) == 2 and "30.82 M" in result.stdout  # info's MACs of depth 20
    assert result.stdout.count("│    200 │") == 3  # eval: every depth on 200 images
    assert not (tmp_path / "out").exists()  # only export, calibrate and bench write there


def test_demo_refuses_bad_options_before_doing_any_work(tmp_path):
    assert parse_steps("pick, info") == ["info", "pick"] and parse_steps(",".join(STEPS)) == list(STEPS)
    for args, fragment in [
        (["--steps", "info,train"], "--steps"),
        (["--steps", ","], "--steps"),
        (["--limit", "0"], "--limit"),
        (["--budget-ms", "-1"], "budget"),
        (["--stat", "p42"], "p42"),
    ]:
        result = run_demo(*args, "--out", tmp_path / "out")
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and fragment in result.stderr, (args, result.stderr)
        assert "$ ddnn-deploy" not in result.stdout and not (tmp_path / "out").exists()


def test_demo_replaces_its_own_earlier_export_but_nothing_else_without_force(tmp_path):
    from ddnn_deploy.atomic import sha256_file
    from ddnn_deploy.cli.demo_cmd import _holds_earlier_demo

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run_demo("--steps", "export", "--out", out)
    assert result.exit_code == 2 and "--force" in result.stderr, result.output
    assert (out / "notes.txt").read_text() == "mine"
    assert not _holds_earlier_demo(out, DEMO_CKPT)
    (out / "manifest.json").write_text(json.dumps({"checkpoint": {"sha256": "0" * 64}}))
    assert not _holds_earlier_demo(out, DEMO_CKPT)  # an export of another checkpoint
    (out / "manifest.json").write_text(json.dumps({"checkpoint": {"sha256": sha256_file(DEMO_CKPT)}}))
    assert _holds_earlier_demo(out, DEMO_CKPT)
