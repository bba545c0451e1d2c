"""Training run configuration: ``data`` / ``model`` / ``optim`` / ``run`` sections from YAML with overrides.

A YAML file may name a ``base:`` file (relative to itself) that is read first and deep-merged;
``section.key=value`` overrides (YAML values) come last.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

AMP_MODES = ("auto", "bf16", "fp16", "none")
_SECTIONS = ("data", "model", "optim", "run")


@dataclass(frozen=True)
class DataConfig:
    """Where the ImageFolder tree is and how it is loaded (batch sizes are per process)."""

    root: str = ""
    train_dir: str = "train"
    val_dir: str = "val"
    classes: Any = None  # None | "0-4,7" | list of positions or folder names (train on a subset)
    input_size: int = 224
    batch_size: int = 64
    eval_batch_size: int | None = None
    workers: int = 4
    augment: dict = field(default_factory=lambda: {"auto_augment": "rand-m9-mstd0.5", "interpolation": "bicubic"})


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule: linear warmup then cosine decay to `min_lr`, stepped every iteration."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    epochs: int = 100
    warmup_epochs: float = 5.0
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    grad_clip: float | None = None


@dataclass(frozen=True)
class RunConfig:
    """Execution: output folder, seed, precision, memory format, compilation, checkpoint cadence."""

    output_dir: str = "runs/default"
    seed: int = 0
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    checkpoint_every_steps: int = 0
    log_every_steps: int = 20


@dataclass(frozen=True)
class TrainConfig:
    """A complete training run: `data`, `model` (SeqParConfig keys or `arch: timm`), `optim`, `run`."""

    data: DataConfig
    model: dict
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        if not isinstance(raw, dict):
            raise ValueError(f"a training config must be a mapping with data/model/optim/run sections, got {type(raw).__name__}")
        unknown = set(raw) - set(_SECTIONS)
        if unknown:
            raise ValueError(f"unknown config section(s) {sorted(unknown)}; expected data, model, optim, run")
        if "model" not in raw or not isinstance(raw["model"], dict):
            raise ValueError("config needs a 'model' mapping (SeqParConfig keys, or arch: timm + name)")
        sections = {}
        for name, kind in (("data", DataConfig), ("optim", OptimConfig), ("run", RunConfig)):
            values = raw.get(name) or {}
            known = {f.name for f in dataclasses.fields(kind)}
            bad = set(values) - known
            if bad:
                raise ValueError(f"unknown key(s) {sorted(bad)} in config section '{name}'; known: {sorted(known)}")
            sections[name] = kind(**values)
        cfg = cls(model=dict(raw["model"]), **sections)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.data.root:
            raise ValueError("data.root is required (an ImageFolder tree with train/ and val/)")
        if self.optim.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optim.optimizer must be 'sgd' or 'adamw', got {self.optim.optimizer!r}")
        if self.run.amp not in AMP_MODES:
            raise ValueError(f"run.amp must be one of {AMP_MODES}, got {self.run.amp!r}")
        if self.optim.epochs < 1 or self.data.batch_size < 1:
            raise ValueError(f"optim.epochs and data.batch_size must be >= 1, got {self.optim.epochs}, {self.data.batch_size}")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config and apply `section.key=value` or whole-section `section={...}` overrides (YAML values)."""
    raw: dict = {}
    if path is not None:
        raw = _read_yaml_with_base(Path(path))
    for item in overrides:
        dotted, value = item.split("=", 1) if "=" in item else (item, None)
        if value is None or ("." not in dotted and dotted not in _SECTIONS):
            raise ValueError(f"override {item!r} must look like section.key=value (e.g. optim.lr=0.05) "
                             f"or section={{...}} with a section of {_SECTIONS}")
        if "." not in dotted:
            raw[dotted] = yaml.safe_load(value)
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part} is not a mapping")
        node[leaf] = yaml.safe_load(value)
    return TrainConfig.from_dict(raw)


def _read_yaml_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A YAML config; a top-level `base: other.yaml` (relative to this file) is read first and deep-merged."""
    if path.resolve() in seen:
        raise ValueError(f"config {path} includes itself through 'base'")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    return _deep_merge(_read_yaml_with_base(path.parent / base, seen + (path.resolve(),)), raw)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


