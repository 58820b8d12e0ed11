import pytest
import torch

from ddnn_deploy.models import build_model, count_macs
from ddnn_deploy.spec import ARCHITECTURES, DepthConfig, parse_depths

SMALL = {"resnet": (3, 64), "cifar_resnet": (1, 28), "vgg": (1, 28)}


def _small_model(name: str, width: int | None = None):
    spec = ARCHITECTURES[name]
    channels, size = SMALL[spec.family]
    width = width or {"resnet": 8, "cifar_resnet": 4, "vgg": 8}[spec.family]
    return build_model(name, num_classes=7, in_channels=channels, input_size=size, width=width), (channels, size)


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if n not in ("resnet101", "cifar_resnet110")])
def test_every_depth_runs_and_returns_stage_features(name):
    model, (channels, size) = _small_model(name)
    model.eval()
    x = torch.randn(2, channels, size, size)
    for config in parse_depths(model.spec, None):
        logits, features = model(x, config, return_features=True)
        assert logits.shape == (2, 7)
        assert len(features) == len(config.blocks)
        assert torch.equal(model(x, config), logits)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "cifar_resnet20", "vgg13_bn"])
def test_sub_net_ignores_the_blocks_it_skips(name):
    """Changing the weights of a skipped block must not change the sub-net's output."""
    model, (channels, size) = _small_model(name)
    model.eval()
    x = torch.randn(2, channels, size, size)
    smallest = parse_depths(model.spec, None)[0]
    before = model(x, smallest)
    full_before = model(x)
    with torch.no_grad():
        for stage, active in zip(model.stages(), smallest.blocks):
            for p in stage[active:].parameters():
                p.add_(1.0)
    assert torch.equal(model(x, smallest), before)
    assert not torch.allclose(model(x), full_before)


def test_depth_argument_forms_agree():
    model, _ = _small_model("resnet50")
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    reference = model(x, DepthConfig((3, 4, 4, 3)))
    for form in (44, "44", "3-4-4-3", (3, 4, 4, 3)):
        assert torch.equal(model(x, form), reference)
    assert torch.equal(model(x, None), model(x, 50))


def test_resnet50_params_and_macs_match_published_counts():
    model = build_model("resnet50")
    published_params = {26: 16.0, 32: 17.4, 38: 21.9, 41: 18.9, 44: 23.3, 50: 25.6}  # paper, Table 2
    for depth, params in published_params.items():
        assert model.count_params(depth) / 1e6 == pytest.approx(params, abs=0.05)
    assert count_macs(model, model.spec.full, (3, 224, 224)) / 1e9 == pytest.approx(4.09, abs=0.005)


def test_cifar_resnet_macs_match_published_counts():
    model = build_model("cifar_resnet56", num_classes=10, input_size=32)
    expected = {20: 40.6, 32: 68.9, 44: 97.2, 56: 125.5}
    for depth, macs in expected.items():
        assert count_macs(model, depth, (3, 32, 32)) / 1e6 == pytest.approx(macs, abs=0.1)
    assert model.count_params(56) / 1e6 == pytest.approx(0.85, abs=0.01)


def test_imagenet_resnet_uses_torchvision_names():
    state = build_model("resnet50").state_dict()
    # torchvision's resnet50: 53 convs, 53 BNs (3 entries of buffers each) and fc -> 320 entries.
    assert len(state) == 320
    for key in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.bias",
        "layer4.2.conv3.weight",
        "layer3.5.bn2.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ):
        assert key in state
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # stride on the 3x3 (v1.5)
    basic = build_model("resnet18").state_dict()
    assert "layer2.0.downsample.0.weight" in basic and "layer1.1.conv2.weight" in basic
    assert len(basic) == 122


def test_input_channels_size_and_classes_are_parameters():
    model = build_model("cifar_resnet20", num_classes=10, in_channels=1, input_size=28)
    assert model(torch.randn(3, 1, 28, 28), 8).shape == (3, 10)
    vgg = build_model("vgg11_bn", num_classes=5, in_channels=3, input_size=224, width=8)
    assert vgg(torch.randn(1, 3, 224, 224)).shape == (1, 5)
