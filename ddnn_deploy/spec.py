"""Depth configurations: DepthConfig, each architecture's depth table, and depth-list parsing.

Pure Python (no torch): the runtime half of the tool (bench, pick) resolves depths too.
The slicing rule lives here and nowhere else: stage ``i`` runs its first ``blocks[i]`` blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

from .errors import UsageError


@dataclass(frozen=True)
class DepthConfig:
    """Active blocks per stage, e.g. ``DepthConfig((3, 4, 4, 3))`` for ResNet-44."""

    blocks: tuple[int, ...]

    def __post_init__(self) -> None:
        blocks = tuple(int(b) for b in self.blocks)
        if not blocks or any(b < 1 for b in blocks):
            raise UsageError(f"invalid depth config {self.blocks!r}: every stage needs at least one block")
        object.__setattr__(self, "blocks", blocks)

    def fits(self, full: DepthConfig) -> bool:
        """True when this config is a sub-net of ``full`` (same stages, no more blocks in each)."""
        return len(self.blocks) == len(full.blocks) and all(a <= b for a, b in zip(self.blocks, full.blocks))

    def active(self, stage: int) -> int:
        """Number of blocks stage ``stage`` runs: THE slicing rule."""
        return self.blocks[stage]

    def __str__(self) -> str:
        return "-".join(str(b) for b in self.blocks)


@dataclass(frozen=True)
class ArchSpec:
    """What the rest of the tool needs to know about an architecture without building it."""

    name: str
    family: str  # "resnet", "cifar_resnet" or "vgg"
    full: DepthConfig
    layers_per_block: int  # weighted layers in one block (2 basic, 3 bottleneck, 1 VGG conv)
    extra_layers: int  # weighted layers outside the blocks (stem conv + classifier)
    named: Mapping[int, DepthConfig] = field(default_factory=dict)

    def depth_of(self, config: DepthConfig) -> int:
        """Conventional depth number of a config: weighted layers on the longest path."""
        return self.layers_per_block * sum(config.blocks) + self.extra_layers

    @property
    def depth(self) -> int:
        return self.depth_of(self.full)

    def table(self) -> dict[int, DepthConfig]:
        """Depth number -> config, for every named depth that fits the full-net (full included)."""
        table = {d: c for d, c in self.named.items() if c.fits(self.full)}
        table[self.depth] = self.full
        return dict(sorted(table.items()))

    def valid_depths_text(self) -> str:
        return ", ".join(f"{d} ({c})" for d, c in self.table().items())


def _cfgs(table: Mapping[int, tuple[int, ...]]) -> dict[int, DepthConfig]:
    return {d: DepthConfig(b) for d, b in table.items()}


# ResNet-50's table is the paper's Table 2; the parameter counts there pin these configs.
_BOTTLENECK_SUBNETS = {26: (2, 2, 2, 2), 32: (2, 3, 3, 2), 38: (3, 3, 3, 3), 41: (3, 4, 4, 2),
                       44: (3, 4, 4, 3), 50: (3, 4, 6, 3)}
# Basic-block ResNets use the same block configs (depth = 2 * blocks + 2).
_BASIC_SUBNETS = {10: (1, 1, 1, 1), 14: (1, 2, 2, 1), 18: (2, 2, 2, 2), 22: (2, 3, 3, 2),
                  26: (3, 3, 3, 3), 28: (3, 4, 4, 2), 30: (3, 4, 4, 3), 34: (3, 4, 6, 3)}
_VGG_CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def _build_registry() -> dict[str, ArchSpec]:
    specs: list[ArchSpec] = [
        ArchSpec("resnet18", "resnet", DepthConfig((2, 2, 2, 2)), 2, 2, _cfgs(_BASIC_SUBNETS)),
        ArchSpec("resnet34", "resnet", DepthConfig((3, 4, 6, 3)), 2, 2, _cfgs(_BASIC_SUBNETS)),
        ArchSpec("resnet50", "resnet", DepthConfig((3, 4, 6, 3)), 3, 2, _cfgs(_BOTTLENECK_SUBNETS)),
        ArchSpec("resnet101", "resnet", DepthConfig((3, 4, 23, 3)), 3, 2,
                 _cfgs({**_BOTTLENECK_SUBNETS, 68: (3, 4, 12, 3), 86: (3, 4, 18, 3)})),
    ]
    for depth in (20, 32, 44, 56, 110):
        n = (depth - 2) // 6
        named = {6 * m + 2: DepthConfig((m, m, m)) for m in range(1, n + 1)}
        specs.append(ArchSpec(f"cifar_resnet{depth}", "cifar_resnet", DepthConfig((n, n, n)), 2, 2, named))
    for depth, blocks in _VGG_CONFIGS.items():
        specs.append(ArchSpec(f"vgg{depth}_bn", "vgg", DepthConfig(blocks), 1, 3, _cfgs(_VGG_CONFIGS)))
    registry: dict[str, ArchSpec] = {}
    for spec in specs:
        if spec.name in registry:  # registries raise on duplicates
            raise RuntimeError(f"duplicate architecture {spec.name}")
        registry[spec.name] = spec
    return registry


ARCHITECTURES: dict[str, ArchSpec] = _build_registry()


def arch_spec(name: str) -> ArchSpec:
    """Look up an architecture by name, or raise a UsageError listing the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}") from None


_CONFIG_RE = re.compile(r"^\d+(-\d+)+$")


def resolve_depth(spec: ArchSpec, token: str | int | DepthConfig | Iterable[int],
                  table: Mapping[int, DepthConfig] | None = None) -> DepthConfig:
    """Turn ``44``, ``"44"``, ``"3-4-4-3"``, a tuple or a DepthConfig into a DepthConfig that fits.

    With an explicit ``table`` (a checkpoint's), only that table's configs are accepted; with the
    architecture's own table, any config that fits inside the full-net is.
    """
    restrict = table is not None
    table = spec.table() if table is None else table
    valid = ", ".join(f"{d} ({c})" for d, c in table.items())
    if isinstance(token, DepthConfig):
        config = token
    elif isinstance(token, (int, str)) and str(token).strip().isdigit():
        number = int(str(token).strip())
        if number not in table:
            raise UsageError(f"{spec.name} has no depth {number}; valid depths: {valid} "
                             f"(or give blocks per stage, e.g. {spec.full})")
        return table[number]
    elif isinstance(token, str):
        text = token.strip()
        if not _CONFIG_RE.match(text):
            raise UsageError(f"cannot parse depth {token!r}: give a depth number like "
                             f"{spec.depth} or blocks per stage like {spec.full}; valid depths: {valid}")
        config = DepthConfig(tuple(int(p) for p in text.split("-")))
    else:
        config = DepthConfig(tuple(token))
    if not config.fits(spec.full):
        raise UsageError(f"depth {config} does not fit inside {spec.name} ({spec.full}); valid depths: {valid}")
    if restrict and config not in table.values():
        raise UsageError(f"depth {config} is not in this checkpoint; valid depths: {valid}")
    return config


DepthLike = Union[int, str, DepthConfig]
DepthsLike = Union[str, int, DepthConfig, Sequence[DepthLike], None]


def parse_depths(spec: ArchSpec, depths: DepthsLike,
                 table: Mapping[int, DepthConfig] | None = None) -> list[DepthConfig]:
    """The depths a caller asked for, as DepthConfigs: ``None`` (or ``""``) means every depth in the table.

    Accepts ``"38,44,50"``, ``"3-4-4-3,3-3-3-3"``, one depth (``44``, ``"3-4-4-3"``, a ``DepthConfig``) or a
    sequence of them (``[38, "3-4-4-3", DepthConfig((3, 4, 6, 3))]``; a sequence of ints is a list of depth
    NUMBERS, blocks per stage are a ``DepthConfig`` or a ``"3-4-4-3"`` string). The result is deduplicated
    and sorted from shallowest to deepest; anything else is a one-line ``UsageError``.
    """
    if depths is None or (isinstance(depths, str) and not depths.strip()):
        configs = list((spec.table() if table is None else table).values())
    else:
        if isinstance(depths, str):
            tokens: list[DepthLike] = [tok for tok in depths.split(",") if tok.strip()]
        elif isinstance(depths, (int, DepthConfig)) and not isinstance(depths, bool):
            tokens = [depths]
        elif isinstance(depths, Sequence) and all(
                isinstance(t, (int, str, DepthConfig)) and not isinstance(t, bool) for t in depths):
            tokens = list(depths)
        else:
            raise UsageError(f"depths must be a string like '8,14,20', a depth number, a DepthConfig or a list of "
                             f"them, not {type(depths).__name__} {depths!r}")
        if not tokens:
            raise UsageError(f"no depth given in {depths!r}")
        configs = [resolve_depth(spec, tok, table) for tok in tokens]
    unique = {c.blocks: c for c in configs}
    by_number: dict[int, DepthConfig] = {}
    for config in unique.values():
        other = by_number.setdefault(spec.depth_of(config), config)
        if other != config:  # the depth number keys files, manifests and results: it must be unique
            raise UsageError(f"depths {other} and {config} both have {spec.depth_of(config)} layers; "
                             "pick one of them (depth numbers must be unique)")
    return sorted(unique.values(), key=lambda c: (spec.depth_of(c), c.blocks))


def depth_label(spec: ArchSpec, config: DepthConfig) -> int:
    """Depth number used as the key in files and tables (the conventional layer count)."""
    return spec.depth_of(config)
