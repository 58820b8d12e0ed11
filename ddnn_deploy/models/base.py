"""DepthNet: the shared base of every depth-level dynamic network, with BN statistics per depth.

A DepthNet is a stem, a list of stages (each an ``nn.Sequential`` of blocks) and a head.
``forward(x, depth)`` runs stage ``i``'s first ``depth.blocks[i]`` blocks (the slicing rule
of ``spec.DepthConfig.active``); there is no hidden "active sub-net" state.

Sub-nets share weights but not activation statistics, so a DepthNet also carries a table of BN
running statistics per depth (``set_depth_bn_stats``), the way slimmable networks switch BN per
width. In eval mode ``model(x, depth)`` normalises with that depth's own statistics; a depth
without stored statistics runs with the shared ones (the registered buffers) and says so once
with a ``SharedBNWarning``. The table is not part of the state_dict (torchvision weights and
checkpoints load unchanged) and follows the model through ``.to()``, ``.half()`` and ``copy.deepcopy``.
Training mode is untouched: every depth uses the shared BN layers with batch statistics.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import UsageError
from ..spec import ArchSpec, DepthConfig, DepthLike, resolve_depth
from .batchnorm import BNOverrides, bn_overrides

BNStats = dict[str, torch.Tensor]
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


class SharedBNWarning(UserWarning):
    """A depth ran in eval mode with the shared BN statistics because the model has none of its own."""


class DepthNet(nn.Module):
    """Base class. Subclasses set ``spec``, ``stage_names`` and implement ``stem``/``head``."""

    spec: ArchSpec
    stage_names: Sequence[str]

    def __init__(self) -> None:
        super().__init__()
        self._depth_bn: dict[DepthConfig, BNStats] = {}  # per-depth BN buffers, outside the state_dict
        self._bn_lookup: dict[DepthConfig, BNOverrides] = {}  # cache: BN module -> (mean, var)
        self._warned: set[DepthConfig] = set()
        self._default_depth: DepthConfig | None = None

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stage_tail(self, x: torch.Tensor) -> torch.Tensor:
        """What runs after a stage's active blocks (VGG pools here); identity by default."""
        return x

    @property
    def default_depth(self) -> DepthConfig:
        """The depth ``model(x)`` runs when no depth is given: the full-net unless set."""
        return self._default_depth or self.spec.full

    @default_depth.setter
    def default_depth(self, depth: DepthLike | None) -> None:
        self._default_depth = None if depth is None else self.resolve(depth)

    def resolve(self, depth: DepthLike | None) -> DepthConfig:
        """``None`` means the default depth; numbers and ``"3-4-4-3"`` strings go through the table."""
        if depth is None:
            return self.default_depth
        if isinstance(depth, DepthConfig) and depth.fits(self.spec.full):
            return depth
        return resolve_depth(self.spec, depth)

    def forward(
        self, x: torch.Tensor, depth: DepthLike | None = None, *, return_features: bool = False, shared_bn: bool = False
    ):
        """Logits of the sub-net ``depth``; with ``return_features`` also each stage's output.

        In eval mode the depth's own BN statistics are used when the model holds them;
        ``shared_bn=True`` runs with the shared BN buffers instead (BN recalibration, comparisons).
        """
        config = self.resolve(depth)
        if self.training or shared_bn:
            return self._run(x, config, return_features)
        with bn_overrides(self._overrides(config)):
            return self._run(x, config, return_features)

    def forward_many(self, x: torch.Tensor, depths: Sequence[DepthLike], *, return_features: bool = False) -> list:
        """Every depth's ``forward`` on one batch, computing ONCE what several depths compute identically.

        In training mode (batch statistics) depths that have run the same blocks so far hold the same activation:
        the stem runs once, and each block runs once for the group of depths that reach it along the same path
        (a tree: ResNet-50's depths 38 and 50 share all of stage 1 and three blocks of stage 2 after the blocks
        all three depths share). The outputs, the loss and the gradients are those of separate ``forward`` calls
        (autograd sums the branches' gradients into the shared blocks); a shared block's BN running averages are
        updated once per step instead of once per depth. In eval mode each depth normalises with its own BN
        statistics, so nothing is shared there.
        """
        configs = [self.resolve(d) for d in depths]
        if not self.training or len(configs) < 2:
            return [self(x, c, return_features=return_features) for c in configs]
        ends: dict[DepthConfig, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self._branch(self.stem(x), list(dict.fromkeys(configs)), 0, 0, [], ends)
        outputs = []
        for config in configs:  # heads in the callers' order (a head's dropout draws as separate calls would)
            y, features = ends[config]
            logits = self.head(y)
            outputs.append((logits, features) if return_features else logits)
        return outputs

    def _branch(
        self, x: torch.Tensor, configs: list[DepthConfig], stage: int, block: int, features: list[torch.Tensor],
        ends: dict[DepthConfig, tuple[torch.Tensor, list[torch.Tensor]]],
    ) -> None:  # fmt: skip
        """Run ``configs`` on from ``stage``/``block``: the blocks they all run once, then split where they part."""
        stages = self.stages()
        while stage < len(stages):
            common = min(c.active(stage) for c in configs)
            for layer in stages[stage][block:common]:
                x = layer(x)
            further = [c for c in configs if c.active(stage) > common]
            if further:  # these go on in this stage from the same activation
                self._branch(x, further, stage, common, features, ends)
            configs = [c for c in configs if c.active(stage) == common]
            if not configs:
                return
            x = self.stage_tail(x)
            features = [*features, x]
            stage, block = stage + 1, 0
        for config in configs:
            ends[config] = (x, features)

    def _run(self, x: torch.Tensor, config: DepthConfig, return_features: bool):
        x = self.stem(x)
        features: list[torch.Tensor] = []
        for index, stage in enumerate(self.stages()):
            for block in stage[: config.active(index)]:
                x = block(x)
            x = self.stage_tail(x)
            features.append(x)
        logits = self.head(x)
        return (logits, features) if return_features else logits

    # --- BN statistics per depth -------------------------------------------------------------

    def set_depth_bn_stats(self, stats: Mapping[DepthLike, Mapping[str, torch.Tensor]]) -> None:
        """Replace the per-depth BN table: ``{depth: {"layer1.0.bn1.running_mean": tensor, ...}}``.

        Depths may be numbers, ``"3-4-4-3"`` strings or DepthConfigs; buffer names are state_dict
        keys of BN running statistics. The tensors are copied to the model's device and dtype.
        """
        buffers = dict(self.named_buffers())
        table: dict[DepthConfig, BNStats] = {}
        for depth, named in stats.items():
            config = self.resolve(depth)
            unknown = [k for k in named if k not in buffers or k.rsplit(".", 1)[-1] not in BN_BUFFERS]
            if unknown:
                raise UsageError(f"BN statistics of depth {config} name unknown buffers: {', '.join(unknown[:3])}")
            misfit = [k for k, v in named.items() if tuple(v.shape) != tuple(buffers[k].shape)]
            if misfit:
                raise UsageError(
                    f"BN statistics of depth {config} do not fit this model: {misfit[0]} has shape "
                    f"{list(named[misfit[0]].shape)}, not {list(buffers[misfit[0]].shape)}"
                )
            table[config] = {
                k: v.detach().to(device=buffers[k].device, dtype=buffers[k].dtype).clone() for k, v in named.items()
            }
        self._depth_bn, self._bn_lookup, self._warned = table, {}, set()

    def depth_bn_stats(self, depth: DepthLike | None = None, *, warn: bool = False) -> BNStats | None:
        """A copy of the stored BN statistics of ``depth``, or ``None`` when it has none (then, with
        ``warn``, the one ``SharedBNWarning`` per depth that running it would give)."""
        stats = self._stored_stats(self.resolve(depth), warn=warn)
        return None if stats is None else {k: v.clone() for k, v in stats.items()}

    @property
    def bn_stats_depths(self) -> list[DepthConfig]:
        """The depths that have their own BN statistics."""
        return list(self._depth_bn)

    def _stored_stats(self, config: DepthConfig, *, warn: bool) -> BNStats | None:
        stats = self._depth_bn.get(config)
        if stats is None and warn and self._depth_bn and config not in self._warned:
            self._warned.add(config)
            stored = ", ".join(str(c) for c in self._depth_bn)
            warnings.warn(
                f"depth {config} has no BN statistics of its own in this model (stored: {stored}); "
                "it runs with the shared BN statistics",
                SharedBNWarning,
                stacklevel=4,
            )
        return stats

    def _overrides(self, config: DepthConfig) -> BNOverrides | None:
        """BN module -> (mean, var) for ``config``; ``None`` (with one warning) when it has no statistics."""
        cached = self._bn_lookup.get(config)
        if cached is not None:
            return cached
        stats = self._stored_stats(config, warn=True)
        if stats is None:
            return None
        lookup = {}
        for name, module in self.named_modules():
            mean, var = stats.get(f"{name}.running_mean"), stats.get(f"{name}.running_var")
            if mean is not None or var is not None:
                lookup[module] = (
                    module.running_mean if mean is None else mean,
                    module.running_var if var is None else var,
                )
        self._bn_lookup[config] = lookup
        return lookup

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True):
        """``.to()``, ``.cuda()``, ``.half()``... move the per-depth BN table along with the buffers."""
        result = super()._apply(fn, recurse)
        self._depth_bn = {c: {k: fn(v) for k, v in s.items()} for c, s in self._depth_bn.items()}
        self._bn_lookup = {}
        return result

    # --- what a depth uses ------------------------------------------------------------------

    def active_modules(self, depth: DepthLike | None) -> list[nn.Module]:
        """Every module the sub-net ``depth`` uses: stem, the active blocks, head."""
        config = self.resolve(depth)
        used: list[nn.Module] = [m for name, m in self.named_children() if name not in self.stage_names]
        for index, stage in enumerate(self.stages()):
            used.extend(stage[: config.active(index)])
        return used

    def active_state_names(self, depth: DepthLike | None) -> list[str]:
        """state_dict keys (parameters and buffers) that the sub-net ``depth`` uses."""
        config = self.resolve(depth)
        names = []
        for key in self.state_dict():
            parts = key.split(".")
            if parts[0] in self.stage_names:
                stage = list(self.stage_names).index(parts[0])
                if int(parts[1]) >= config.active(stage):
                    continue
            names.append(key)
        return names

    def count_params(self, depth: DepthLike | None = None) -> int:
        """Parameters the sub-net ``depth`` uses (shared weights counted once)."""
        return sum(p.numel() for m in self.active_modules(depth) for p in m.parameters())
