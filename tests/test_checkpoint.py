import os
import pickle
from pathlib import Path

import pytest
import torch

from ddnn_deploy.checkpoint import Checkpoint, load_checkpoint, load_state_dict_file, save_checkpoint
from ddnn_deploy.errors import CheckpointError
from ddnn_deploy.models import build_model
from ddnn_deploy.spec import DepthConfig


def _ckpt(arch="cifar_resnet20"):
    model = build_model(arch, num_classes=10, in_channels=1, input_size=28, width=4)
    depths = [DepthConfig((1, 1, 1)), DepthConfig((3, 3, 3))]
    return Checkpoint(
        arch=arch,
        model={"num_classes": 10, "in_channels": 1, "input_size": 28, "width": 4},
        depths=depths,
        state_dict=model.state_dict(),
        bn_stats={"1-1-1": {"bn1.running_mean": torch.full((4,), 0.5)}},
        preprocess={"scale": 1 / 255, "mean": [0.286], "std": [0.353], "layout": "NCHW"},
        input_shape=[1, 28, 28],
        dataset="fashion-mnist",
        class_names=list("abcdefghij"),
        metrics={"1-1-1": {"top1": 90.0}},
        training={"settings": {"epochs": 1}},
    )


def test_round_trip(tmp_path):
    ckpt = _ckpt()
    path = save_checkpoint(ckpt, tmp_path / "a.pt")
    loaded = load_checkpoint(path)
    assert loaded.arch == ckpt.arch and loaded.depths == ckpt.depths
    assert loaded.table() == {8: DepthConfig((1, 1, 1)), 20: DepthConfig((3, 3, 3))}
    for key, value in ckpt.state_dict.items():
        assert torch.equal(loaded.state_dict[key], value)
    model = loaded.build(DepthConfig((1, 1, 1)))
    assert model.default_depth == DepthConfig((1, 1, 1)) and not model.training
    assert torch.equal(model.depth_bn_stats(8)["bn1.running_mean"], torch.full((4,), 0.5))  # its own BN statistics
    assert torch.equal(model.bn1.running_mean, ckpt.state_dict["bn1.running_mean"])  # buffers stay the shared ones
    assert loaded.metrics == ckpt.metrics and loaded.class_names == ckpt.class_names
    # loadable with weights_only=True by anyone, not only by this tool
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "ddnn-deploy.checkpoint" and raw["version"] == 1


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/ddnn-deploy-pwned-marker")


def test_refuses_unsafe_pickles_without_executing_them(tmp_path):
    MARKER.unlink(missing_ok=True)
    bad = tmp_path / "evil.pt"
    torch.save({"format": "ddnn-deploy.checkpoint", "payload": _Exploit()}, bad)
    with pytest.raises(CheckpointError, match="unsafe unpickling"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="unsafe unpickling"):
        load_state_dict_file(bad)
    assert not MARKER.exists()
    raw_pickle = tmp_path / "raw.pkl"
    raw_pickle.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw_pickle)
    assert not MARKER.exists()


def test_truncated_other_format_and_missing(tmp_path):
    path = save_checkpoint(_ckpt(), tmp_path / "a.pt")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    plain = tmp_path / "plain.pt"
    torch.save(build_model("resnet18").state_dict(), plain)
    with pytest.raises(CheckpointError, match="ddnn-deploy convert"):
        load_checkpoint(plain)
    text = tmp_path / "x.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_wrong_architecture_is_refused(tmp_path):
    ckpt = _ckpt()
    ckpt.arch = "cifar_resnet32"
    ckpt.depths = [DepthConfig((1, 1, 1))]
    path = save_checkpoint(ckpt, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="do not fit cifar_resnet32"):
        load_checkpoint(path).build()


def test_atomic_save_keeps_previous_file_on_failure(tmp_path):
    path = save_checkpoint(_ckpt(), tmp_path / "a.pt")
    before = path.read_bytes()
    broken = _ckpt()
    broken.training = {"bad": object()}
    with pytest.raises(TypeError):
        save_checkpoint(broken, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temporary file left behind
