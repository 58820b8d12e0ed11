import pytest

from ddnn_deploy.errors import UsageError
from ddnn_deploy.spec import ARCHITECTURES, DepthConfig, arch_spec, parse_depths


def test_resnet50_table_is_the_papers_table_2():
    table = arch_spec("resnet50").table()
    assert {d: c.blocks for d, c in table.items()} == {
        26: (2, 2, 2, 2), 32: (2, 3, 3, 2), 38: (3, 3, 3, 3), 41: (3, 4, 4, 2), 44: (3, 4, 4, 3), 50: (3, 4, 6, 3)}


def test_resnet34_holds_resnet18_and_cifar_tables_are_6n_plus_2():
    assert arch_spec("resnet34").table()[18].blocks == (2, 2, 2, 2)
    assert arch_spec("cifar_resnet56").table()[20].blocks == (3, 3, 3)
    assert sorted(arch_spec("cifar_resnet20").table()) == [8, 14, 20]
    assert {d: c.blocks for d, c in arch_spec("vgg19_bn").table().items()} == {
        11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
    # VGG-19 is not a sub-net of VGG-16, so VGG-16's table stops at 16.
    assert sorted(arch_spec("vgg16_bn").table()) == [11, 13, 16]


@pytest.mark.parametrize("text,expected", [
    ("38,44,50", [(3, 3, 3, 3), (3, 4, 4, 3), (3, 4, 6, 3)]),
    ("3-4-4-3,3-3-3-3", [(3, 3, 3, 3), (3, 4, 4, 3)]),
    ("50, 44 ,44", [(3, 4, 4, 3), (3, 4, 6, 3)]),
    ("1-1-1-1,26", [(1, 1, 1, 1), (2, 2, 2, 2)]),
    (None, [c.blocks for c in arch_spec("resnet50").table().values()]),
])
def test_parse_depths(text, expected):
    configs = parse_depths(arch_spec("resnet50"), text)
    assert sorted(c.blocks for c in configs) == sorted(expected)
    assert len(configs) == len(set(c.blocks for c in configs))


@pytest.mark.parametrize("text,fragment", [
    ("39", "has no depth 39"), ("3-4-7-3", "does not fit"), ("3-4-4", "does not fit"),
    ("abc", "cannot parse"), ("0-1-1-1", "at least one block"), (",", "no depth"),
])
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
