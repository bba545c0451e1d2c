"""Build, export and load the models the engine trains: SeqPar networks and plain timm baselines.

A SeqPar model round-trips with `save_pretrained` / `load_seqpar`. A plain timm baseline (the
ResNet rows of the paper's tables) is exported the same way: `config.json` (here with a
`timm_model` entry and the class ids/names) + `model.safetensors`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vision.data import ClassSet
from vision.model import DEFAULT_MODEL_DIR

_TIMM_KEY = "timm_model"


class TimmClassifier(nn.Module):
    """A plain timm classifier that carries the label ids and names of its outputs."""

    def __init__(self, name: str, class_ids: list[int], class_names: list[str], metadata: dict | None = None,
                 **kwargs: Any):
        super().__init__()
        import timm

        self.name, self.kwargs, self.metadata = name, dict(kwargs), dict(metadata or {})
        self.class_ids, self.class_names = list(class_ids), list(class_names)
        self.net = timm.create_model(name, pretrained=False, num_classes=len(class_ids), **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {_TIMM_KEY: self.name, "kwargs": self.kwargs, "class_ids": self.class_ids, "class_names": self.class_names,
                  "metadata": self.metadata}
        (directory / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(directory / "model.safetensors"))


def build_model(model_cfg: dict[str, Any], classes: ClassSet, metadata: dict[str, Any], image_size: int = 224) -> nn.Module:
    """A freshly initialised model for `classes` from the `model:` section of a training config.

    `arch: seqpar` (default) passes the remaining keys to `vision.SeqParConfig`, or to a named
    `vision.presets` variant with `preset:`; `hierarchy` (or `hierarchy_file`) leaves are output
    positions. `arch: timm` builds `timm.create_model(name)` as a baseline.
    """
    cfg = dict(model_cfg)
    arch = cfg.pop("arch", "seqpar")
    weights = cfg.pop("weights", None)
    if arch == "timm":
        if "name" not in cfg:
            raise ValueError("model.arch 'timm' needs model.name (e.g. resnet50)")
        model = TimmClassifier(cfg.pop("name"), list(classes.class_ids), list(classes.class_names), metadata, **cfg)
        if weights:
            _load_matching(model.net, weights, "timm model")
        return model
    if arch != "seqpar":
        raise ValueError(f"model.arch must be 'seqpar' or 'timm', got {arch!r}")
    from vision import Hierarchy, SeqParConfig, build_seqpar
    from vision.presets import preset

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
    if seqpar_cfg.freeze_trunk and not weights:
        raise ValueError("model.freeze_trunk needs model.weights (pretrained trunk weights); "
                         "a frozen random trunk would train the branches on noise")
    model = build_seqpar(seqpar_cfg)
    if weights:
        _load_matching(model.trunk.body, weights, "SeqPar trunk")
    return model


def _read_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if path.suffix in (".pth", ".pt", ".bin"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    raise ValueError(f"weights file {path} must be .safetensors, .pth, .pt or .bin")


def _load_matching(module: nn.Module, path: str | Path, what: str) -> None:
    """Load the tensors of `path` whose names and shapes match `module` (timm names); fail if none do."""
    state = _read_state(path)
    own = module.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"no tensor of {path} matches the {what} by name and shape (expected timm parameter names)")
    missing = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if missing and what == "SeqPar trunk":
        raise ValueError(f"{path} lacks {len(missing)} {what} tensors, e.g. {missing[:3]}")
    module.load_state_dict(matched, strict=False)


def export_model(model: nn.Module, directory: str | Path) -> Path:
    """Write `model` (SeqPar or timm baseline) as `config.json` + `model.safetensors`."""
    model.save_pretrained(directory)
    return Path(directory)


def load_model(directory: str | Path) -> nn.Module:
    """Load a model directory written by `export_model` (SeqPar or timm baseline), or "default": the packaged model."""
    directory = DEFAULT_MODEL_DIR if str(directory) == "default" else Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"model folder {directory} has no config.json (expected a folder written by save_pretrained)")
    config = json.loads(config_path.read_text())
    if _TIMM_KEY not in config:
        from vision import load_seqpar

        return load_seqpar(directory)
    model = TimmClassifier(config[_TIMM_KEY], config["class_ids"], config["class_names"], config.get("metadata"),
                           **config.get("kwargs", {}))
    model.net.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model


def model_metadata(model: nn.Module) -> dict:
    """The provenance metadata saved with a model (training config, dataset classes)."""
    return dict(model.metadata if isinstance(model, TimmClassifier) else model.config.metadata or {})


def model_classes(model: nn.Module) -> tuple[list[int], list[str]]:
    """Label ids and names of the outputs of a SeqPar or timm baseline model."""
    if isinstance(model, TimmClassifier):
        return model.class_ids, model.class_names
    cfg = model.config
    ids = list(cfg.class_ids) if cfg.class_ids is not None else list(range(cfg.num_classes))
    names = list(cfg.class_names) if cfg.class_names is not None else [str(i) for i in ids]
    return ids, names
