"""The architecture registry (ArchSpec: depth table, input shape, classes, preprocessing) and depth parsing.

Pure Python (no torch, no numpy): the runtime half of the tool (bench, pick) resolves depths too.
The slicing rule lives here and nowhere else: stage ``i`` runs its first ``blocks[i]`` blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, NamedTuple, Union
from typing import Sequence as SequenceOf  # subscriptable at run time on Python 3.8 (collections.abc is not)

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


class Normalization(NamedTuple):
    """An architecture's default input normalisation: the model sees ``(pixels * scale - mean) / std``.

    Pure Python, so the spec needs neither numpy nor ``ddnn_deploy.data``; ``to_dict()`` is the
    checkpoint's ``preprocess`` entry, which ``data.Preprocess.from_dict`` reads.
    """

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str = "NCHW"

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std), "layout": self.layout}


IMAGENET_NORMALIZATION = Normalization(1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR10_NORMALIZATION = Normalization(1 / 255, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


@dataclass(frozen=True)
class ArchSpec:
    """Everything the tool knows about an architecture without building it (timm's default config).

    The depth table (``full``, ``named``), how a config's depth number is counted, and the defaults a
    model of this architecture is built and fed with: ``default_input`` (C, H, W), ``default_classes``
    and ``preprocess``. Adding an architecture means adding one ``ArchSpec`` to the registry below
    (plus a model class in ``ddnn_deploy.models`` only for a new ``family``).
    """

    name: str
    family: str  # "resnet", "cifar_resnet" or "vgg"
    full: DepthConfig
    layers_per_block: int  # weighted layers in one block (2 basic, 3 bottleneck, 1 VGG conv)
    extra_layers: int  # weighted layers outside the blocks (stem conv + classifier)
    named: Mapping[int, DepthConfig] = field(default_factory=dict)
    default_input: tuple[int, int, int] = (3, 224, 224)  # give these by keyword
    default_classes: int = 1000
    preprocess: Normalization = IMAGENET_NORMALIZATION

    def __post_init__(self) -> None:
        shape = tuple(self.default_input)
        if len(shape) != 3 or any(int(d) < 1 for d in shape) or shape[1] != shape[2]:
            raise ValueError(f"{self.name}: default_input must be (C, H, W) with H == W, not {shape}")
        if self.default_classes < 1:
            raise ValueError(f"{self.name}: default_classes must be at least 1")
        if not len(self.preprocess.mean) == len(self.preprocess.std) == shape[0]:
            raise ValueError(f"{self.name}: preprocess mean/std need one value per input channel ({shape[0]})")
        object.__setattr__(self, "default_input", tuple(int(d) for d in shape))

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

    def model_kwargs(
        self,
        *,
        num_classes: int | None = None,
        in_channels: int | None = None,
        input_size: int | None = None,
        width: int | None = None,
    ) -> dict[str, Any]:
        """``build_model`` keyword arguments: each ``None`` becomes this architecture's default."""
        given = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size, "width": width}
        for name, value in given.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, Integral) or value < 1):
                raise UsageError(f"{name} must be a positive integer, not {value!r}")
            if value is not None and value > MODEL_LIMITS[name]:
                raise UsageError(f"{name} {value} is beyond what ddnn-deploy builds (at most {MODEL_LIMITS[name]})")
        channels, size, _ = self.default_input
        defaults = {"num_classes": self.default_classes, "in_channels": channels, "input_size": size, "width": None}
        return {name: defaults[name] if value is None else int(value) for name, value in given.items()}


# Far above any real network, far below what would exhaust memory before failing: a typo is an error, not an OOM.
MODEL_LIMITS = {"num_classes": 1_000_000, "in_channels": 64, "input_size": 8192, "width": 4096}


def _cfgs(table: Mapping[int, tuple[int, ...]]) -> dict[int, DepthConfig]:
    return {d: DepthConfig(b) for d, b in table.items()}


# ResNet-50's table is the paper's Table 2; the parameter counts there pin these configs.
_BOTTLENECK_SUBNETS = _cfgs(
    {26: (2, 2, 2, 2), 32: (2, 3, 3, 2), 38: (3, 3, 3, 3), 41: (3, 4, 4, 2), 44: (3, 4, 4, 3), 50: (3, 4, 6, 3)}
)
# Basic-block ResNets use the same block configs (depth = 2 * blocks + 2).
_BASIC_SUBNETS = _cfgs(
    {
        10: (1, 1, 1, 1),
        14: (1, 2, 2, 1),
        18: (2, 2, 2, 2),
        22: (2, 3, 3, 2),
        26: (3, 3, 3, 3),
        28: (3, 4, 4, 2),
        30: (3, 4, 4, 3),
        34: (3, 4, 6, 3),
    }
)
_VGG_CONFIGS = _cfgs({11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)})


def _cifar_resnet(depth: int) -> ArchSpec:
    """CIFAR ResNet-(6n+2): n blocks per stage; every 6m+2 (m <= n) is a named sub-net; CIFAR-10 defaults."""
    n = (depth - 2) // 6
    named = {6 * m + 2: DepthConfig((m, m, m)) for m in range(1, n + 1)}
    return ArchSpec(
        f"cifar_resnet{depth}",
        "cifar_resnet",
        DepthConfig((n, n, n)),
        2,
        2,
        named,
        default_input=(3, 32, 32),
        default_classes=10,
        preprocess=CIFAR10_NORMALIZATION,
    )


def _vgg(depth: int) -> ArchSpec:
    return ArchSpec(f"vgg{depth}_bn", "vgg", _VGG_CONFIGS[depth], 1, 3, _VGG_CONFIGS)


def _build_registry() -> dict[str, ArchSpec]:
    """THE architecture registry. ImageNet defaults (3x224x224, 1000 classes) unless a spec says otherwise."""
    specs: list[ArchSpec] = [
        ArchSpec("resnet18", "resnet", DepthConfig((2, 2, 2, 2)), 2, 2, _BASIC_SUBNETS),
        ArchSpec("resnet34", "resnet", DepthConfig((3, 4, 6, 3)), 2, 2, _BASIC_SUBNETS),
        ArchSpec("resnet50", "resnet", DepthConfig((3, 4, 6, 3)), 3, 2, _BOTTLENECK_SUBNETS),
        ArchSpec(
            "resnet101",
            "resnet",
            DepthConfig((3, 4, 23, 3)),
            3,
            2,
            {**_BOTTLENECK_SUBNETS, **_cfgs({68: (3, 4, 12, 3), 86: (3, 4, 18, 3)})},
        ),
        *(_cifar_resnet(depth) for depth in (20, 32, 44, 56, 110)),
        *(_vgg(depth) for depth in (11, 13, 16, 19)),
    ]
    registry: dict[str, ArchSpec] = {}
    for spec in specs:
        if spec.name in registry:  # registries raise on duplicates
            raise RuntimeError(f"duplicate architecture {spec.name}")
        registry[spec.name] = spec
    return registry


ARCHITECTURES: dict[str, ArchSpec] = _build_registry()


def arch_spec(name: str) -> ArchSpec:
    """Look up an architecture by name, or raise a UsageError listing the known ones."""
    if not isinstance(name, str):
        raise UsageError(f"arch must be an architecture name (str), not {type(name).__name__} {name!r}")
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UsageError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}") from None


_CONFIG_RE = re.compile(r"^\d+(-\d+)+$")


def resolve_depth(
    spec: ArchSpec, token: str | int | DepthConfig | Iterable[int], table: Mapping[int, DepthConfig] | None = None
) -> DepthConfig:
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
            raise UsageError(
                f"{spec.name} has no depth {number}; valid depths: {valid} (or give blocks per stage, e.g. {spec.full})"
            )
        return table[number]
    elif isinstance(token, str):
        text = token.strip()
        if not _CONFIG_RE.match(text):
            raise UsageError(
                f"cannot parse depth {token!r}: give a depth number like "
                f"{spec.depth} or blocks per stage like {spec.full}; valid depths: {valid}"
            )
        config = DepthConfig(tuple(int(p) for p in text.split("-")))
    else:
        config = DepthConfig(tuple(token))
    if not config.fits(spec.full):
        raise UsageError(f"depth {config} does not fit inside {spec.name} ({spec.full}); valid depths: {valid}")
    if restrict and config not in table.values():
        raise UsageError(f"depth {config} is not in this checkpoint; valid depths: {valid}")
    return config


# typing.Union, not `|`: these aliases are evaluated at import, and the runtime half runs on Python 3.8
DepthLike = Union[int, str, DepthConfig]  # noqa: UP007
DepthsLike = Union[str, int, DepthConfig, SequenceOf[DepthLike], None]  # noqa: UP006, UP007


def parse_depths(
    spec: ArchSpec, depths: DepthsLike, table: Mapping[int, DepthConfig] | None = None
) -> list[DepthConfig]:
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
            isinstance(t, (int, str, DepthConfig)) and not isinstance(t, bool) for t in depths
        ):
            tokens = list(depths)
        else:
            raise UsageError(
                f"depths must be a string like '8,14,20', a depth number, a DepthConfig or a list of "
                f"them, not {type(depths).__name__} {depths!r}"
            )
        if not tokens:
            raise UsageError(f"no depth given in {depths!r}")
        configs = [resolve_depth(spec, tok, table) for tok in tokens]
    unique = {c.blocks: c for c in configs}
    by_number: dict[int, DepthConfig] = {}
    for config in unique.values():
        other = by_number.setdefault(spec.depth_of(config), config)
        if other != config:  # the depth number keys files, manifests and results: it must be unique
            raise UsageError(
                f"depths {other} and {config} both have {spec.depth_of(config)} layers; "
                "pick one of them (depth numbers must be unique)"
            )
    return sorted(unique.values(), key=lambda c: (spec.depth_of(c), c.blocks))


def depth_label(spec: ArchSpec, config: DepthConfig) -> int:
    """Depth number used as the key in files and tables (the conventional layer count)."""
    return spec.depth_of(config)
