import pytest

from ddnn_deploy.errors import UsageError
from ddnn_deploy.spec import ARCHITECTURES, ArchSpec, DepthConfig, arch_spec, parse_depths


def test_resnet50_table_is_the_papers_table_2():
    table = arch_spec("resnet50").table()
    assert {d: c.blocks for d, c in table.items()} == {
        26: (2, 2, 2, 2),
        32: (2, 3, 3, 2),
        38: (3, 3, 3, 3),
        41: (3, 4, 4, 2),
        44: (3, 4, 4, 3),
        50: (3, 4, 6, 3),
    }


def test_resnet34_holds_resnet18_and_cifar_tables_are_6n_plus_2():
    assert arch_spec("resnet34").table()[18].blocks == (2, 2, 2, 2)
    assert arch_spec("cifar_resnet56").table()[20].blocks == (3, 3, 3)
    assert sorted(arch_spec("cifar_resnet20").table()) == [8, 14, 20]
    assert {d: c.blocks for d, c in arch_spec("vgg19_bn").table().items()} == {
        11: (1, 1, 2, 2, 2),
        13: (2, 2, 2, 2, 2),
        16: (2, 2, 3, 3, 3),
        19: (2, 2, 4, 4, 4),
    }
    # VGG-19 is not a sub-net of VGG-16, so VGG-16's table stops at 16.
    assert sorted(arch_spec("vgg16_bn").table()) == [11, 13, 16]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("38,44,50", [(3, 3, 3, 3), (3, 4, 4, 3), (3, 4, 6, 3)]),
        ("3-4-4-3,3-3-3-3", [(3, 3, 3, 3), (3, 4, 4, 3)]),
        ("50, 44 ,44", [(3, 4, 4, 3), (3, 4, 6, 3)]),
        ("1-1-1-1,26", [(1, 1, 1, 1), (2, 2, 2, 2)]),
        (None, [c.blocks for c in arch_spec("resnet50").table().values()]),
    ],
)
def test_parse_depths(text, expected):
    configs = parse_depths(arch_spec("resnet50"), text)
    assert sorted(c.blocks for c in configs) == sorted(expected)
    assert len(configs) == len(set(c.blocks for c in configs))


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("39", "has no depth 39"),
        ("3-4-7-3", "does not fit"),
        ("3-4-4", "does not fit"),
        ("abc", "cannot parse"),
        ("0-1-1-1", "at least one block"),
        (",", "no depth"),
    ],
)
def test_bad_depths_list_the_valid_ones(text, fragment):
    with pytest.raises(UsageError) as err:
        parse_depths(arch_spec("resnet50"), text)
    message = str(err.value)
    assert fragment in message
    if fragment in ("has no depth 39", "does not fit", "cannot parse"):
        assert "26 (2-2-2-2)" in message and "50 (3-4-6-3)" in message


def test_depthconfig_is_frozen_and_validated():
    config = DepthConfig((3, 4, 4, 3))
    with pytest.raises(AttributeError):
        config.blocks = (1,)  # type: ignore[misc]
    assert str(config) == "3-4-4-3"
    assert config.fits(DepthConfig((3, 4, 6, 3))) and not config.fits(DepthConfig((3, 4, 3, 3)))


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(UsageError, match="resnet50"):
        arch_spec("resnet51")


def test_every_arch_depth_numbers_are_unique():
    for spec in ARCHITECTURES.values():
        table = spec.table()
        assert table[spec.depth] == spec.full
        assert all(spec.depth_of(c) == d for d, c in table.items())


def test_checkpoint_tables_accept_only_their_own_configs():
    spec = arch_spec("cifar_resnet20")
    table = {8: DepthConfig((1, 1, 1)), 14: DepthConfig((2, 2, 2))}
    assert parse_depths(spec, "1-1-1,14", table) == [DepthConfig((1, 1, 1)), DepthConfig((2, 2, 2))]
    with pytest.raises(UsageError, match="not in this checkpoint; valid depths: 8 \\(1-1-1\\), 14 \\(2-2-2\\)"):
        parse_depths(spec, "3-3-3", table)


def test_colliding_depth_numbers_are_refused():
    with pytest.raises(UsageError, match="both have 41 layers"):
        parse_depths(arch_spec("resnet50"), "3-4-4-2,2-4-4-3")


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_spec_carries_its_input_classes_and_preprocess_and_builds(name):
    spec = arch_spec(name)
    channels, height, width = spec.default_input
    assert channels >= 1 and height == width >= 28 and spec.default_classes >= 2
    assert len(spec.preprocess.mean) == len(spec.preprocess.std) == channels and spec.preprocess.scale > 0
    assert all(s > 0 for s in spec.preprocess.std)
    kwargs = spec.model_kwargs()
    assert kwargs == {"num_classes": spec.default_classes, "in_channels": channels, "input_size": height, "width": None}
    torch = pytest.importorskip("torch")
    from ddnn_deploy.models import build_model

    model = build_model(name, **kwargs).eval()
    shallowest = min(spec.table())
    with torch.no_grad():
        logits = model(torch.zeros(1, *spec.default_input), shallowest)
    assert logits.shape == (1, spec.default_classes)


def test_family_defaults_follow_timm_and_torchvision():
    assert arch_spec("resnet50").default_input == (3, 224, 224) and arch_spec("resnet50").default_classes == 1000
    assert arch_spec("vgg16_bn").preprocess.mean == (0.485, 0.456, 0.406)
    cifar = arch_spec("cifar_resnet56")
    assert cifar.default_input == (3, 32, 32) and cifar.default_classes == 10
    assert cifar.preprocess.mean == (0.4914, 0.4822, 0.4465)
    assert cifar.preprocess.to_dict() == {
        "scale": 1 / 255,
        "mean": [0.4914, 0.4822, 0.4465],
        "std": [0.2470, 0.2435, 0.2616],
        "layout": "NCHW",
    }


def test_model_kwargs_fill_defaults_and_reject_bad_types():
    spec = arch_spec("cifar_resnet20")
    assert spec.model_kwargs(in_channels=1, input_size=28, width=8) == {
        "num_classes": 10,
        "in_channels": 1,
        "input_size": 28,
        "width": 8,
    }
    for bad in ({"num_classes": "10"}, {"in_channels": 0}, {"input_size": 2.5}, {"width": True}):
        with pytest.raises(UsageError, match=f"{next(iter(bad))} must be a positive integer"):
            spec.model_kwargs(**bad)
    with pytest.raises(UsageError, match="arch must be an architecture name"):
        arch_spec(50)  # type: ignore[arg-type]


def test_spec_rejects_inconsistent_defaults():
    with pytest.raises(ValueError, match="one value per input channel"):
        ArchSpec("x", "resnet", DepthConfig((1, 1)), 2, 2, default_input=(1, 28, 28))
    with pytest.raises(ValueError, match="H == W"):
        ArchSpec("x", "resnet", DepthConfig((1, 1)), 2, 2, default_input=(3, 32, 28))


def test_describe_and_convert_read_the_spec_and_take_depth_sequences(tmp_path):
    pytest.importorskip("torch")
    from ddnn_deploy.convert import convert_weights
    from ddnn_deploy.describe import describe

    info = describe(arch="cifar_resnet20", depths=[8, "3-3-3"], width=8)
    assert info["input_shape"] == [3, 32, 32] and [r["depth"] for r in info["depths"]] == [8, 20]
    with pytest.raises(UsageError, match="num_classes must be a positive integer"):
        describe(arch="cifar_resnet20", num_classes="10")  # type: ignore[arg-type]
    ckpt = convert_weights(arch="cifar_resnet20", out=tmp_path / "c.pt", depths=(8, 14), width=8)
    assert ckpt.model["num_classes"] == 10 and ckpt.input_shape == [3, 32, 32]
    assert ckpt.preprocess == arch_spec("cifar_resnet20").preprocess.to_dict()
    assert [c.blocks for c in ckpt.depths] == [(1, 1, 1), (2, 2, 2)]
    grey = convert_weights(arch="cifar_resnet20", out=tmp_path / "g.pt", in_channels=1, input_size=28, width=8)
    assert grey.preprocess["mean"] == [0.2860] and grey.input_shape == [1, 28, 28]
    with pytest.raises(UsageError, match="width: only with --arch"):
        describe(ckpt=tmp_path / "c.pt", width=8)
    with pytest.raises(UsageError, match="out must be a file path"):
        convert_weights(arch="cifar_resnet20", out=None)  # type: ignore[arg-type]
