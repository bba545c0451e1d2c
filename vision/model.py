"""SeqPar networks: a shared trunk, fused parallel branches per tree level, cutouts and gains."""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

import torch
from torch import nn

from xmcommon.threads import MODEL_BUILD_LOCK

from .config import SeqParConfig
from .hierarchy import Hierarchy
from .nn.blocks import block_class, strided_size
from .nn.grouped import GroupedLogitHead
from .nn.meta import meta_device
from .nn.trunk import Trunk

Gains = Union[Mapping[Union[int, str], float], torch.Tensor, None]


# A level runs its branches in chunks of sibling groups whose widest feature map (Block.widest_map) stays under
# CHUNK_BYTES_PER_IMAGE per image and CHUNK_BYTES in all (see BranchLevel). Measured on 2 CPU cores
# (benchmarks/cutout.py): one tensor over all of a wide level's branches loses to per-branch code, because each
# elementwise pass streams it through memory (and a fresh large allocation page-faults). One image's chunk stays
# cache-sized (PHL-lateSP-100 branches at batch 1: 4-6 % slower with 4 MiB chunks); at larger batches no chunk
# of even one group fits a cache, and fewer, larger products win (batch 16, 4 MiB against the 1-group chunks of
# an estimate that counted the input's width at the input's resolution: branches of PHL-lateSP-10/100 and
# NHL-ResNet50/NHL-ConvNeXtV2-100/1000 7-13 % faster, the packaged model's unchanged; batch 1 unchanged).
CHUNK_BYTES = 4 * 2**20
CHUNK_BYTES_PER_IMAGE = 2**20
# Leaves without blocks compute their logits one run of siblings at a time (GroupedLogitHead's ``runs``) where
# the runs hold at least this many leaves on average; shorter runs gather their parents' features instead.
MIN_SIBLING_RUN = 4


class BranchLevel(nn.Module):
    """All branches of one tree level, fused: ``blocks`` run many branches at once.

    ``parent_index[g]`` is the position (in the previous level) of branch g's parent; leaves of
    this level end in ``head`` (global pooling + one logit each). The branches run in chunks of
    siblings (consecutive groups with one parent, their widest maps within a budget, see ``CHUNK_BYTES``):
    a chunk's first block reads its parent's map directly (a grouped conv over the siblings'
    weights on a shared input), so no level ever copies its parents' features per branch.
    ``keep_features=False`` (the last level, or one whose next level has no blocks) keeps only the pooled
    features. A level without blocks has leaves only: each leaf's logit reads its parent's pooled features.
    """

    def __init__(self, *, block: str, groups: int, in_channels: int, channels: int, depth: int, stride: int,
                 hidden: int | None, parent_index: Sequence[int], parent_groups: int, leaf_positions: Sequence[int],
                 keep_features: bool = True):
        super().__init__()
        self.groups = groups
        self.parent_groups = parent_groups
        self.in_channels = in_channels
        self.out_channels = channels if depth > 0 else in_channels
        self.keep_features = keep_features
        hidden = hidden or block_class(block).default_hidden(in_channels, channels)
        self.blocks = nn.ModuleList(
            block_class(block)(groups=groups, in_channels=in_channels if i == 0 else channels, hidden=hidden,
                       out_channels=channels, stride=stride if i == 0 else 1)
            for i in range(depth)
        )
        # Index buffers are built on the CPU explicitly, also when the module is built on "meta".
        self.register_buffer("parent_index", torch.tensor(list(parent_index), dtype=torch.long, device="cpu"),
                             persistent=False)
        self.register_buffer("leaf_positions", torch.tensor(list(leaf_positions), dtype=torch.long, device="cpu"),
                             persistent=False)
        self.leaf_list = list(leaf_positions)
        self._all_leaves = self.leaf_list == list(range(groups))
        self._siblings = _sibling_runs(list(parent_index))
        self._chunk_plans: dict[tuple[int, ...], list[tuple[int, int, int]]] = {}  # by input shape
        self.head = GroupedLogitHead(len(leaf_positions), self.out_channels) if len(leaf_positions) else None

    def forward(self, parent: torch.Tensor, gain: torch.Tensor | None = None,
                attention_block: int = 0) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``parent``: the previous level's features (maps, or their global averages ``(B, P*C)`` for a level
        without blocks); ``gain`` ``(B or 1, G)`` multiplies each branch's feature maps at block
        ``attention_block`` (ignored without blocks). Returns (features, leaf logits): the features are the
        maps, or only their averages ``(B, G*C)`` with ``keep_features=False``, and None without blocks."""
        b = parent.shape[0]
        if not self.blocks:  # leaves only, without feature maps: its gains act on the logits only (see attend)
            pooled = (parent if parent.ndim == 2 else parent.mean((2, 3))).view(b, self.parent_groups, -1)
            if len(self._siblings) * MIN_SIBLING_RUN <= self.groups:
                return None, self.head(pooled, self._siblings)
            return None, self.head(pooled.index_select(1, self.parent_index))
        maps, pooled = [], []
        width, shared_parent, prepared = self.in_channels, -1, None
        for start, stop, p in self._chunks(parent):
            x = parent[:, p * width : (p + 1) * width] if self.parent_groups > 1 else parent
            if p != shared_parent:  # the first chunk of this parent's children
                shared_parent, prepared = p, self.blocks[0].prepare_shared(x)
            part = None if (start, stop) == (0, self.groups) else (start, stop)  # one chunk: the modules as they are
            for i, block in enumerate(self.blocks):
                block_gain = gain[:, start:stop] if gain is not None and i == attention_block else None
                x = block(x, shared=i == 0, gain=block_gain, part=part, prepared=prepared if i == 0 else None)
            pooled.append(x.mean((2, 3)))
            if self.keep_features:
                maps.append(x)
        pooled = pooled[0] if len(pooled) == 1 else torch.cat(pooled, 1)
        logits = self._logits(pooled.view(b, self.groups, -1)) if self.head is not None else None
        if not self.keep_features:
            return pooled, logits
        return (maps[0] if len(maps) == 1 else torch.cat(maps, 1)), logits

    def _chunks(self, parent: torch.Tensor) -> list[tuple[int, int, int]]:
        """(start, stop, parent) chunks of siblings for this input size (cached per size). A traced graph (ONNX
        export) keeps the one-image plan for every batch, so that its slices do not depend on the dynamic batch."""
        images = 1 if torch.jit.is_tracing() else parent.shape[0]
        key = (images, parent.shape[2], parent.shape[3], parent.element_size())
        plan = self._chunk_plans.get(key)
        if plan is None:
            height, width, widest = parent.shape[2], parent.shape[3], 0
            for block in self.blocks:
                widest = max(widest, block.widest_map(height, width))
                height, width = strided_size(height, width, block.stride)  # the next block's input
            budget = min(CHUNK_BYTES, images * CHUNK_BYTES_PER_IMAGE)
            most = max(1, budget // (images * widest * parent.element_size()))
            plan = [(g, min(g + most, stop), p) for start, stop, p in self._siblings for g in range(start, stop, most)]
            self._chunk_plans[key] = plan
        return plan

    def _logits(self, pooled: torch.Tensor) -> torch.Tensor | None:
        if self.head is None:
            return None
        if not self._all_leaves:
            pooled = pooled.index_select(1, self.leaf_positions)
        return self.head(pooled)


def _sibling_runs(parent_index: list[int]) -> list[tuple[int, int, int]]:
    """(start, stop, parent) of each run of consecutive groups with one parent (breadth-first trees have
    one run per parent)."""
    runs: list[tuple[int, int, int]] = []
    for g, p in enumerate(parent_index):
        if runs and runs[-1][2] == p:
            runs[-1] = (runs[-1][0], g + 1, p)
        else:
            runs.append((g, g + 1, p))
    return runs


class SeqParModel(nn.Module):
    """A SeqPar (PHL/NHL) network. ``forward(x, gains=None) -> (B, num_classes)`` logits."""

    def __init__(self, config: SeqParConfig, trunk: Trunk | None = None):
        super().__init__()
        with MODEL_BUILD_LOCK:  # see xmcommon.threads: never while transformers loads a model in another thread
            self.config = config
            self.hierarchy = Hierarchy(config.hierarchy, config.num_classes)
            self.trunk = trunk if trunk is not None else Trunk(config.backbone, config.split_point)
            self.levels = nn.ModuleList()
            in_channels, parent_groups = self.trunk.out_channels, 1
            for depth, nodes in enumerate(self.hierarchy.levels):
                level = BranchLevel(
                    block=config.block, groups=len(nodes), in_channels=in_channels,
                    channels=config.branch_channels[depth], depth=config.branch_depth[depth],
                    stride=config.branch_stride[depth], hidden=config.branch_hidden[depth],
                    parent_index=[max(n.parent, 0) for n in nodes], parent_groups=parent_groups,
                    leaf_positions=[p for p, n in enumerate(nodes) if n.is_leaf],
                    keep_features=depth + 1 < len(self.hierarchy.levels) and config.branch_depth[depth + 1] > 0,
                )
                self.levels.append(level)
                in_channels, parent_groups = level.out_channels, len(nodes)
            order = [n.class_index for nodes in self.hierarchy.levels for n in nodes if n.is_leaf]
            position = torch.empty(config.num_classes, dtype=torch.long, device="cpu")
            position[torch.tensor(order, device="cpu")] = torch.arange(len(order), device="cpu")
            self.register_buffer("output_order", position, persistent=False)
            self._class_position = {cid: i for i, cid in enumerate(config.class_ids)}
            # (levels, classes): the position of each class's ancestor (or leaf) at each level, -1 below its leaf
            path_nodes = torch.full((len(self.hierarchy.levels), config.num_classes), -1, dtype=torch.long,
                                    device="cpu")
            for c in range(config.num_classes):
                for depth, pos in self.hierarchy.path(*self.hierarchy.leaf_position(c)):
                    path_nodes[depth, c] = pos
            self.register_buffer("path_nodes", path_nodes, persistent=False)
            self._shares_trunk = False  # set by cutout(share_trunk=True): an inference-only view of another trunk
            if config.freeze_trunk:
                self.trunk.requires_grad_(False)

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, gains: Gains = None) -> torch.Tensor:
        level_gains = self.level_gains(gains, x.shape[0])
        return self.forward_branches(self.trunk(x), level_gains)

    def forward_branches(self, features: torch.Tensor, level_gains: list[torch.Tensor | None]) -> torch.Tensor:
        """The (attended) logits from trunk features; ``level_gains`` from :meth:`level_gains`."""
        return self.attend_branches(features, level_gains)[0]

    def attend_branches(self, features: torch.Tensor,
                        level_gains: list[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """(attended logits, plain logits) from trunk features.

        Top-down attention, for a class whose tree path (its leaf and ancestors) has gains with product
        ``G``: the paper's feature-map gain runs in every branch with blocks, and the attended logit keeps
        its effect only in the gain's direction, then adds ``log G``::

            z_att = max(z_feature_gain, z_plain) + log G   (G > 1; min(...) for G < 1; z_plain for G = 1)

        so a gain > 1 multiplies the class's odds against every other class by at least ``G`` (< 1 divides
        them), 0 silences it, and a gain of 1 is an exact identity.
        """
        plain = self._run_levels(features, [None] * len(self.levels))
        if all(g is None for g in level_gains):
            return plain, plain
        in_blocks = [g if level.blocks else None for g, level in zip(level_gains, self.levels)]
        gained = self._run_levels(features, in_blocks) if any(g is not None for g in in_blocks) else None
        return attended_logits(gained, plain, self.path_gains(level_gains)), plain

    def _run_levels(self, features: torch.Tensor, level_gains: list[torch.Tensor | None]) -> torch.Tensor:
        logits = []
        for level, gain in zip(self.levels, level_gains):
            features, leaf_logits = level(features, gain, self.config.attention_block)
            if leaf_logits is not None:
                logits.append(leaf_logits)
        return torch.cat(logits, 1).index_select(1, self.output_order)

    def path_gains(self, level_gains: list[torch.Tensor | None]) -> torch.Tensor:
        """Per class (output order), the product of the gains on its tree path: ``(B or 1, num_classes)``."""
        path = torch.ones(1, self.config.num_classes, device=self.output_order.device)
        for depth, gain in enumerate(level_gains):
            if gain is not None:  # a gather from the level's gains and a trailing 1 (classes above this level)
                padded = torch.cat([gain.float(), torch.ones_like(gain[:, :1], dtype=torch.float32)], 1)
                index = self.path_nodes[depth]
                path = path * padded.index_select(1, torch.where(index >= 0, index, gain.shape[1]))
        return path

    def train(self, mode: bool = True) -> SeqParModel:
        if self._shares_trunk:
            if mode:
                self._refuse("train()")
            self.training = False
            self.levels.eval()  # the shared trunk is left in whatever mode its owner put it
            return self
        super().train(mode)
        if self.config.freeze_trunk:
            self.trunk.eval()
        return self

    # A cutout that shares its parent's trunk must never change that trunk: no mode, dtype, device,
    # gradient or weight changes through it. It follows its parent instead (crossmodal's cutout cache
    # rebuilds cached cutouts when the parent moves).
    def _apply(self, fn: Any, recurse: bool = True) -> SeqParModel:
        if self._shares_trunk:
            self._refuse(".to() / .half() / .float() / .cuda()")
        return super()._apply(fn, recurse)

    def requires_grad_(self, requires_grad: bool = True) -> SeqParModel:
        if self._shares_trunk:
            self._refuse("requires_grad_()")
        return super().requires_grad_(requires_grad)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        if self._shares_trunk:
            self._refuse("load_state_dict()")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _refuse(self, action: str) -> None:
        raise RuntimeError(f"{action} on a cutout that shares its parent's trunk would change the parent: such a "
                           "cutout is an inference-only view that follows its parent (move or cast the parent and "
                           "cut it out again); use cutout(..., share_trunk=False) for an independent model")

    @property
    def shares_trunk(self) -> bool:
        """True for a cutout that runs its parent's trunk module (``cutout(share_trunk=True)``)."""
        return self._shares_trunk

    @property
    def class_ids(self) -> tuple[int, ...]:
        return self.config.class_ids

    @property
    def class_names(self) -> tuple[str, ...]:
        """The outputs' names (the config's, else the ids as text)."""
        return self.config.class_names or tuple(str(c) for c in self.config.class_ids)

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Provenance: how the model was made (training config, build recipe)."""
        return self.config.metadata

    def data_config(self) -> dict[str, Any]:
        """The eval data config (``timm.data.create_transform(**data_config)``): see ``SeqParConfig.preprocessing``."""
        return self.config.data_config()

    def node_gains(self, class_gains: Mapping[int, float]) -> dict[str, float]:
        """Gains for the tree nodes whose classes (label ids) all have a gain in ``class_gains``: the smallest."""
        positions = {self._class_position[c]: g for c, g in class_gains.items() if c in self._class_position}
        return self.hierarchy.node_gains(positions)

    # ------------------------------------------------------------------ gains
    def level_gains(self, gains: Gains, batch_size: int = 1) -> list[torch.Tensor | None]:
        """Per level, a ``(B or 1, G)`` gain tensor (``None`` where every gain is 1)."""
        levels: list[torch.Tensor | None] = [None] * len(self.levels)
        if gains is None:
            return levels
        device = self.output_order.device
        if isinstance(gains, torch.Tensor):
            return self._tensor_gains(gains.to(device), batch_size)
        if not isinstance(gains, Mapping):
            raise ValueError("gains must be a mapping {class id or node name: gain} or a tensor, "
                             f"got {type(gains).__name__}")
        for key, value in gains.items():
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"gain for {key!r} must be a finite number >= 0, got {value}")
            if isinstance(key, str):
                depth, pos = self.hierarchy.node_position(key)
            elif isinstance(key, numbers.Integral) and not isinstance(key, bool) and int(key) in self._class_position:
                depth, pos = self.hierarchy.leaf_position(self._class_position[int(key)])
            else:
                raise ValueError(f"gain key {key!r} is neither a class id of this model nor a tree node name")
            if levels[depth] is None:
                levels[depth] = torch.ones(1, self.levels[depth].groups, device=device)
            levels[depth][0, pos] = value
        return levels

    def _tensor_gains(self, gains: torch.Tensor, batch_size: int) -> list[torch.Tensor | None]:
        if gains.ndim == 1:
            gains = gains.unsqueeze(0)
        if gains.ndim != 2 or gains.shape[1] != self.config.num_classes or gains.shape[0] not in (1, batch_size):
            raise ValueError(
                f"a gains tensor must have shape (B, num_classes) = ({batch_size}, {self.config.num_classes}) "
                f"or ({self.config.num_classes},), got {tuple(gains.shape)}"
            )
        if not torch.isfinite(gains).all() or (gains < 0).any():
            raise ValueError("gains must be finite and >= 0")
        levels: list[torch.Tensor | None] = []
        for depth, level in enumerate(self.levels):
            nodes = self.hierarchy.levels[depth]
            leaf_classes = [n.class_index for n in nodes if n.is_leaf]
            if not leaf_classes:
                levels.append(None)
                continue
            full = torch.ones(gains.shape[0], level.groups, device=gains.device, dtype=torch.float32)
            full[:, level.leaf_positions] = gains[:, leaf_classes].float()
            levels.append(full)
        return levels

    # ----------------------------------------------------------------- cutout
    def cutout(self, classes: Sequence[int], share_trunk: bool = False) -> SeqParModel:
        """A new model with only the trunk, the ancestors of ``classes`` and their leaves.

        ``classes`` are label ids (``config.class_ids``); the cutout's outputs follow their order
        and its logits equal this model's logits at those classes. ``share_trunk=True`` runs this
        model's trunk module instead of a copy: the cutout is then an inference-only view that
        refuses every change that would reach this model (mode, dtype, device, weights).
        """
        classes = list(classes)
        if not classes:
            raise ValueError("cutout needs at least one class")
        if len(set(classes)) != len(classes):
            raise ValueError(f"cutout classes contain duplicates: {classes}")
        unknown = [c for c in classes if c not in self._class_position]
        if unknown:
            raise ValueError(f"cutout classes {unknown} are not classes of this model")
        tree, positions = self.hierarchy.subset([self._class_position[c] for c in classes])
        levels = len(positions)
        calibration = self.config.calibration
        if calibration.level_gains is not None:
            calibration = dataclasses.replace(calibration, level_gains=calibration.level_gains[:levels])
        config = self.config.replace(
            hierarchy=tree, num_classes=len(classes), class_ids=tuple(classes),
            class_names=tuple(self.config.class_names[self._class_position[c]] for c in classes)
            if self.config.class_names else None,
            branch_channels=self.config.branch_channels[:levels], branch_depth=self.config.branch_depth[:levels],
            branch_stride=self.config.branch_stride[:levels], branch_hidden=self.config.branch_hidden[:levels],
            calibration=calibration,
        )
        with MODEL_BUILD_LOCK:
            new = build_on_meta(config, self.trunk if share_trunk else copy.deepcopy(self.trunk))
            for level, new_level, keep in zip(self.levels, new.levels, positions):
                idx = torch.tensor(keep)
                for i, block in enumerate(level.blocks):
                    new_level.blocks[i] = block.select(idx)
                if level.head is not None and new_level.head is not None:
                    leaf_rank = {p: i for i, p in enumerate(level.leaf_list)}
                    new_level.head = level.head.select(torch.tensor([leaf_rank[p] for p in keep if p in leaf_rank]))
        device = next(self.trunk.parameters()).device
        if share_trunk:  # move only what the cutout owns: its levels and the index buffers built on the CPU
            new.levels.to(device)
            for name, buffer in new.named_buffers(recurse=False):
                setattr(new, name, buffer.to(device))
            new._shares_trunk = True
            return new.train(False)
        return new.to(device).train(self.training)

    # ------------------------------------------------------------- save/load
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``."""
        from .io import save_seqpar

        save_seqpar(self, directory)

    def export_onnx(self, path: str | os.PathLike, *, gains: bool = True, **kwargs: Any) -> Any:
        """Write this model as a self-describing ONNX file (``vision.onnx.export_onnx``); returns its path."""
        from .onnx import export_onnx

        return export_onnx(self, path, gains=gains, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> SeqParModel:
        """Load a model saved by :meth:`save_pretrained`; ``"default"`` is the packaged model."""
        from .io import load_seqpar

        return load_seqpar(directory, map_location)


def attended_logits(gained: torch.Tensor | None, plain: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """Combine logits with and without the feature-map gains (``gained``: ``None`` when no branch with
    blocks had a gain) for path gains ``path`` (see :meth:`SeqParModel.attend_branches`)."""
    if gained is not None:
        along = torch.where(path > 1, torch.maximum(gained, plain), torch.minimum(gained, plain))
        plain = torch.where(path == 1, plain, along)
    return plain + torch.log(path).to(plain.dtype)


def build_on_meta(config: SeqParConfig, trunk: nn.Module | None = None) -> SeqParModel:
    """The module structure on the "meta" device (no memory, no random init); weights are then assigned."""
    with meta_device():
        return SeqParModel(config, trunk)


def build_seqpar(config: SeqParConfig) -> SeqParModel:
    """Build a freshly initialised SeqPar model (trunk weights are timm's random init)."""
    return SeqParModel(config)
