"""SeqPar networks: a shared trunk, fused parallel branches per tree level, cutouts and gains."""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xmcommon.files import atomic_write
from .blocks import GroupedLogitHead, default_hidden, make_block
from .config import SeqParConfig
from .hierarchy import Hierarchy
from .trunk import Trunk

Gains = Union[Mapping[Union[int, str], float], torch.Tensor, None]
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"


class BranchLevel(nn.Module):
    """All branches of one tree level, fused: ``blocks`` run every branch at once.

    ``parent_index[g]`` is the position (in the previous level) of branch g's parent; leaves of
    this level end in ``head`` (global pooling + one logit each).
    """

    def __init__(self, *, block: str, groups: int, in_channels: int, channels: int, depth: int, stride: int,
                 hidden: int | None, parent_index: Sequence[int], parent_groups: int, leaf_positions: Sequence[int]):
        super().__init__()
        self.groups = groups
        self.parent_groups = parent_groups
        self.shared_input = parent_groups == 1 and depth > 0
        self.out_channels = channels if depth > 0 else in_channels
        hidden = hidden or default_hidden(block, in_channels, channels)
        self.blocks = nn.ModuleList(
            make_block(block, groups=groups, in_channels=in_channels if i == 0 else channels, hidden=hidden,
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
        self._identity_gather = parent_groups == groups and list(parent_index) == list(range(groups))
        self.head = GroupedLogitHead(len(leaf_positions), self.out_channels) if len(leaf_positions) else None

    def forward(self, parent: torch.Tensor, gain: torch.Tensor | None = None,
                attention_block: int = 0) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``parent``: the previous level's features. Returns (features, leaf logits)."""
        if not self.blocks:
            pooled = self._gather(parent.mean((2, 3)).unsqueeze(-1).unsqueeze(-1)).flatten(1)
            pooled = pooled.view(pooled.shape[0], self.groups, -1)
            if gain is not None:
                pooled = pooled * gain.to(pooled.dtype).unsqueeze(-1)
            return None, self._logits(pooled)
        x = parent if self.shared_input else self._gather(parent)
        for i, block in enumerate(self.blocks):
            x = block(x, shared=self.shared_input and i == 0, gain=gain if i == attention_block else None)
        logits = self._logits(x.mean((2, 3)).view(x.shape[0], self.groups, -1)) if self.head is not None else None
        return x, logits

    def _gather(self, parent: torch.Tensor) -> torch.Tensor:
        """Each branch's copy of its parent's features: ``(B, Gp*C, H, W)`` -> ``(B, G*C, H, W)``."""
        if self._identity_gather:
            return parent
        if self.parent_groups == 1:
            return parent.repeat(1, self.groups, 1, 1)
        b, c, h, w = parent.shape
        v = parent.view(b, self.parent_groups, c // self.parent_groups, h, w)
        return v.index_select(1, self.parent_index).reshape(b, -1, h, w)

    def _logits(self, pooled: torch.Tensor) -> torch.Tensor | None:
        if self.head is None:
            return None
        if not self._all_leaves:
            pooled = pooled.index_select(1, self.leaf_positions)
        return self.head(pooled)


class SeqParModel(nn.Module):
    """A SeqPar (PHL/NHL) network. ``forward(x, gains=None) -> (B, num_classes)`` logits."""

    def __init__(self, config: SeqParConfig, trunk: Trunk | None = None):
        super().__init__()
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
            )
            self.levels.append(level)
            in_channels, parent_groups = level.out_channels, len(nodes)
        order = [n.class_index for nodes in self.hierarchy.levels for n in nodes if n.is_leaf]
        position = torch.empty(config.num_classes, dtype=torch.long, device="cpu")
        position[torch.tensor(order, device="cpu")] = torch.arange(len(order), device="cpu")
        self.register_buffer("output_order", position, persistent=False)
        self._class_position = {cid: i for i, cid in enumerate(config.class_ids)}
        if config.freeze_trunk:
            self.trunk.requires_grad_(False)

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, gains: Gains = None) -> torch.Tensor:
        level_gains = self.level_gains(gains, x.shape[0])
        return self.forward_branches(self.trunk(x), level_gains)

    def forward_branches(self, features: torch.Tensor, level_gains: list[torch.Tensor | None]) -> torch.Tensor:
        """Run the branch levels on trunk features; ``level_gains`` from :meth:`level_gains`."""
        logits = []
        for level, gain in zip(self.levels, level_gains):
            features, leaf_logits = level(features, gain, self.config.attention_block)
            if leaf_logits is not None:
                logits.append(leaf_logits)
        return torch.cat(logits, 1).index_select(1, self.output_order)

    def train(self, mode: bool = True) -> SeqParModel:
        super().train(mode)
        if self.config.freeze_trunk:
            self.trunk.eval()
        return self

    @property
    def class_ids(self) -> tuple[int, ...]:
        return self.config.class_ids

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
            raise ValueError(f"gains must be a mapping {{class id or node name: gain}} or a tensor, got {type(gains).__name__}")
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
        and its logits equal this model's logits at those classes. ``share_trunk=True`` reuses
        this model's trunk module (read-only inference) instead of copying it.
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
        config = self.config.replace(
            hierarchy=tree, num_classes=len(classes), class_ids=tuple(classes),
            class_names=tuple(self.config.class_names[self._class_position[c]] for c in classes)
            if self.config.class_names else None,
            branch_channels=self.config.branch_channels[: len(positions)],
            branch_depth=self.config.branch_depth[: len(positions)],
            branch_stride=self.config.branch_stride[: len(positions)],
            branch_hidden=self.config.branch_hidden[: len(positions)],
        )
        new = _build_empty(config, self.trunk if share_trunk else copy.deepcopy(self.trunk))
        for level, new_level, keep in zip(self.levels, new.levels, positions):
            idx = torch.tensor(keep)
            for i, block in enumerate(level.blocks):
                new_level.blocks[i] = block.select(idx)
            if level.head is not None and new_level.head is not None:
                leaf_rank = {p: i for i, p in enumerate(level.leaf_list)}
                new_level.head = level.head.select(torch.tensor([leaf_rank[p] for p in keep if p in leaf_rank]))
        return new.to(next(self.trunk.parameters()).device).train(self.training)

    # ------------------------------------------------------------- save/load
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if self.config.pretrained_trunk:
            unchanged = _trunk_keys_equal_to_package(self)
            state = {k: v for k, v in state.items() if k not in unchanged}
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
        atomic_write(directory / CONFIG_NAME,
                      lambda p: Path(p).write_text(json.dumps(self.config.to_dict(), indent=2)))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> SeqParModel:
        """Load a model saved by :meth:`save_pretrained`; ``"default"`` is the packaged model."""
        directory = DEFAULT_MODEL_DIR if str(directory) == "default" else Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: a SeqPar model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
        try:
            config = SeqParConfig.from_dict(json.loads(config_path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{config_path} is not a valid SeqPar config: {err}") from err
        model = _build_empty(config)
        state = load_file(str(weights_path), device=str(map_location))
        if config.pretrained_trunk:  # the package's trunk, then the tensors the file changes (e.g. fine-tuned norms)
            state = {**{f"trunk.body.{k}": v for k, v in pretrained_trunk_state(config).items()}, **state}
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            details = "; ".join(
                f"{what}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
                for what, keys in (("missing", missing), ("unexpected", unexpected),
                                   ("wrong shape", [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                                                    for k in wrong]))
                if keys
            )
            raise ValueError(f"weights in {weights_path} do not match {config_path}: {details}")
        state = {k: v.to(expected[k].dtype) for k, v in state.items()}
        model.load_state_dict(state, assign=True)
        if config.freeze_trunk:
            model.trunk.requires_grad_(False)
        return model.to(map_location).eval()


def pretrained_trunk_state(config: SeqParConfig) -> dict[str, torch.Tensor]:
    """The trunk's weights from the installed package named by ``config.pretrained_trunk``."""
    from .pretrained import create_pretrained_lite, timm_name

    if timm_name(config.pretrained_trunk) != config.backbone:
        raise ValueError(f"pretrained_trunk {config.pretrained_trunk!r} does not fit backbone {config.backbone!r}")
    with torch.device("meta"):
        trunk_keys = Trunk(config.backbone, config.split_point).body.state_dict().keys()
    full = create_pretrained_lite(config.pretrained_trunk).state_dict()
    return {k: full[k] for k in trunk_keys}


def _trunk_keys_equal_to_package(model: SeqParModel) -> set[str]:
    """State-dict keys of the trunk tensors that equal the package's (cast to the model's dtype, e.g. fp16):
    a saved model omits them and loads them from the package."""
    reference = pretrained_trunk_state(model.config)
    return {f"trunk.body.{k}" for k, v in model.trunk.body.state_dict().items()
            if torch.equal(v.cpu(), reference[k].to(v.dtype))}


def _build_empty(config: SeqParConfig, trunk: Trunk | None = None) -> SeqParModel:
    """The module structure on the "meta" device (no memory, no random init); weights are then assigned."""
    with torch.device("meta"):
        return SeqParModel(config, trunk)


def build_seqpar(config: SeqParConfig) -> SeqParModel:
    """Build a freshly initialised SeqPar model (trunk weights are timm's random init)."""
    return SeqParModel(config)


def load_seqpar(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> SeqParModel:
    """Load a SeqPar model directory (``config.json`` + ``model.safetensors``) or ``"default"``."""
    return SeqParModel.from_pretrained(directory, map_location)
