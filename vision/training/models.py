"""The models the training engine builds from a config's ``model:`` section: SeqPar networks or timm baselines."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..baseline import TimmClassifier
from ..config import Preprocessing, SeqParConfig
from ..data.folder import ClassSet
from ..hierarchy import Hierarchy
from ..io import read_weights
from ..model import build_seqpar
from ..presets import preset

# Keys of `data.augment` that are eval preprocessing too: they become the model's `preprocessing`.
EVAL_AUGMENT_KEYS = ("mean", "std", "crop_pct", "interpolation")


def model_preprocessing(backbone: str, augment: Mapping[str, Any] | None) -> Preprocessing:
    """The backbone's timm preprocessing with the eval keys of ``data.augment`` (mean, std, crop_pct,
    interpolation) applied: what the trained model's own evaluation must use."""
    base = dataclasses.asdict(Preprocessing.for_backbone(backbone))
    overrides = {k: augment[k] for k in EVAL_AUGMENT_KEYS if augment and augment.get(k) is not None}
    return Preprocessing(**{**base, **overrides})


def build_model(model_cfg: dict[str, Any], classes: ClassSet, metadata: dict[str, Any], *, image_size: int = 224,
                augment: Mapping[str, Any] | None = None) -> nn.Module:
    """A freshly initialised model for ``classes`` from the ``model:`` section of a training config.

    ``arch: seqpar`` (default) passes the remaining keys to :class:`vision.SeqParConfig`, or to a named
    :mod:`vision.presets` variant with ``preset:``; ``hierarchy`` (or ``hierarchy_file``) leaves are output
    positions. ``arch: timm`` builds ``timm.create_model(name)`` as a baseline. ``weights`` loads timm-named
    trunk (or baseline) tensors. The model's preprocessing is its backbone's, with the eval keys of ``augment``.
    """
    cfg = dict(model_cfg)
    arch = cfg.pop("arch", "seqpar")
    weights = cfg.pop("weights", None)
    if arch == "timm":
        if "name" not in cfg:
            raise ValueError("model.arch 'timm' needs model.name (e.g. resnet50)")
        name = cfg.pop("name")
        model = TimmClassifier(name, classes.class_ids, classes.class_names, image_size=image_size,
                               preprocessing=model_preprocessing(name, augment), metadata=metadata, **cfg)
        if weights:
            _load_matching(model.net, weights, "timm model")
        return model
    if arch != "seqpar":
        raise ValueError(f"model.arch must be 'seqpar' or 'timm', got {arch!r}")
    for key in ("num_classes", "class_ids", "class_names"):
        if key in cfg:
            raise ValueError(f"model.{key} is set from the dataset's class folders; remove it from the config")
    for key in ("branch_channels", "branch_depth", "branch_stride", "branch_hidden"):
        if isinstance(cfg.get(key), list):
            cfg[key] = tuple(cfg[key])
    if "hierarchy_file" in cfg:
        if "hierarchy" in cfg:
            raise ValueError("give model.hierarchy or model.hierarchy_file, not both")
        cfg["hierarchy"] = Hierarchy.load(cfg.pop("hierarchy_file"), len(classes.class_ids)).tree
    cfg.setdefault("image_size", image_size)
    common = dict(num_classes=len(classes.class_ids), class_ids=tuple(classes.class_ids),
                  class_names=tuple(classes.class_names), metadata={**cfg.pop("metadata", {}), **metadata})
    name = cfg.pop("preset", None)
    seqpar_cfg = preset(name, **common, **cfg) if name else SeqParConfig(**common, **cfg)
    if "preprocessing" not in cfg:
        seqpar_cfg = seqpar_cfg.replace(preprocessing=model_preprocessing(seqpar_cfg.backbone, augment))
    if seqpar_cfg.freeze_trunk and not weights:
        raise ValueError("model.freeze_trunk needs model.weights (pretrained trunk weights); "
                         "a frozen random trunk would train the branches on noise")
    model = build_seqpar(seqpar_cfg)
    if weights:
        _load_matching(model.trunk.body, weights, "SeqPar trunk")
    return model


def _read_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_weights(path)
    if path.suffix in (".pth", ".pt", ".bin"):
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: never unpickles code
        return state.get("state_dict", state) if isinstance(state, dict) else state
    raise ValueError(f"weights file {path} must be .safetensors, .pth, .pt or .bin")


def _load_matching(module: nn.Module, path: str | Path, what: str) -> None:
    """Load the tensors of ``path`` whose names and shapes match ``module`` (timm names); fail if none do."""
    state = _read_state(path)
    own = module.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"no tensor of {path} matches the {what} by name and shape (expected timm parameter names)")
    missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if missing and what == "SeqPar trunk":
        raise ValueError(f"{path} lacks {len(missing)} {what} tensors, e.g. {missing[:3]}")
    module.load_state_dict(matched, strict=False)
