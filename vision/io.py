"""Saving and loading models: a directory with ``config.json`` + ``model.safetensors``, never a pickle.

``load_seqpar`` / ``SeqParModel.from_pretrained`` read SeqPar models, ``load_model`` any model the
project saves (SeqPar or a timm baseline). ``"default"`` names the packaged default model. Models whose
trunk comes from a registered weight source (``config.pretrained_trunk``) store only the trunk
tensors that differ from it. Every unreadable or mismatched file is a ValueError naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from xmcommon.files import atomic_write, atomic_write_text

from .baseline import TIMM_KEY, TimmClassifier
from .config import SeqParConfig
from .model import SeqParModel, build_on_meta
from .nn.meta import meta_device
from .nn.trunk import Trunk
from .zoo import DEFAULT_MODEL_DIR, DEFAULT_MODEL_NAME
from .zoo.weights import trunk_weight_source

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """The model directory ``name_or_path`` names: ``"default"`` is the packaged default model."""
    return DEFAULT_MODEL_DIR if str(name_or_path) == DEFAULT_MODEL_NAME else Path(name_or_path)


def read_model_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory; FileNotFoundError / ValueError naming the file."""
    directory = resolve_model_dir(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"model directory {directory} not found (expected a folder written by save_pretrained, "
                                f"or '{DEFAULT_MODEL_NAME}')")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a model directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a valid model config (JSON): {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a valid model config: expected a JSON object, got {type(config).__name__}")
    return config


def read_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; FileNotFoundError when missing, ValueError when unreadable or when a
    floating tensor holds NaN or infinite values."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from err
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ValueError(f"{path}: tensor {broken[0]!r} holds NaN or infinite values"
                         f"{f' (and {len(broken) - 1} more)' if len(broken) > 1 else ''}")
    return state


def save_seqpar(model: SeqParModel, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.config.pretrained_trunk:
        unchanged = _trunk_keys_equal_to_source(model)
        state = {k: v for k, v in state.items() if k not in unchanged}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    save_config(model.config, directory)
    return directory


def save_config(config: SeqParConfig, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` (atomically), e.g. a new calibration beside unchanged weights."""
    return atomic_write_text(Path(directory) / CONFIG_NAME, json.dumps(config.to_dict(), indent=2))


def copy_weights(source: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Copy a model directory's ``model.safetensors`` byte for byte (atomically) into ``directory``."""
    source, directory = resolve_model_dir(source), Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = (source / WEIGHTS_NAME).read_bytes()
    return atomic_write(directory / WEIGHTS_NAME, lambda tmp: Path(tmp).write_bytes(data))


def load_seqpar(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> SeqParModel:
    """Load a SeqPar model directory (``config.json`` + ``model.safetensors``) or ``"default"``, in eval mode."""
    directory = resolve_model_dir(directory)
    raw = read_model_config(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if TIMM_KEY in raw:
        raise ValueError(f"{config_path} describes a timm baseline ({raw[TIMM_KEY]}), not a SeqPar model; "
                         "load it with vision.io.load_model")
    try:
        config = SeqParConfig.from_dict(raw)
    except (TypeError, KeyError) as err:
        raise ValueError(f"{config_path} is not a valid SeqPar config: {err}") from err
    except ValueError as err:
        raise ValueError(f"{config_path}: {err}") from err
    model = build_on_meta(config)
    state = read_weights(weights_path, map_location)
    if config.pretrained_trunk:  # the source's trunk, then the tensors the file changes (e.g. fine-tuned norms)
        state = {**{f"trunk.body.{k}": v for k, v in trunk_state(config).items()}, **state}
    expected = model.state_dict()
    _check_state(state, expected, weights_path, config_path)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, assign=True)
    if config.freeze_trunk:
        model.trunk.requires_grad_(False)
    return model.to(map_location).eval()


def load_model(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load any saved model directory: a SeqPar model or a timm baseline (:class:`TimmClassifier`)."""
    raw = read_model_config(directory)
    if TIMM_KEY not in raw:
        return load_seqpar(directory, map_location)
    directory = resolve_model_dir(directory)
    model = TimmClassifier.from_config_dict(raw)
    state = read_weights(directory / WEIGHTS_NAME, map_location)
    _check_state(state, model.net.state_dict(), directory / WEIGHTS_NAME, directory / CONFIG_NAME)
    model.net.load_state_dict(state)
    return model.to(map_location).eval()


def trunk_state(config: SeqParConfig) -> dict[str, torch.Tensor]:
    """The trunk's weights (``trunk.body`` names) from the source named by ``config.pretrained_trunk``."""
    source = trunk_weight_source(config.pretrained_trunk, config.backbone)
    with meta_device():
        trunk_keys = Trunk(config.backbone, config.split_point).body.state_dict().keys()
    full = source.load()
    return {k: full[k] for k in trunk_keys}


def _trunk_keys_equal_to_source(model: SeqParModel) -> set[str]:
    """State-dict keys of the trunk tensors that equal the source's (cast to the model's dtype, e.g. fp16):
    a saved model omits them and loads them from the source."""
    reference = trunk_state(model.config)
    return {f"trunk.body.{k}" for k, v in model.trunk.body.state_dict().items()
            if torch.equal(v.cpu(), reference[k].to(v.dtype))}


def _check_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], weights_path: Path,
                 config_path: Path) -> None:
    """ValueError naming every missing, unexpected or mis-shaped tensor."""
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


def model_digest(model: SeqParModel) -> str:
    """sha256 over a model's config and every tensor of its state dict (names, dtypes, shapes, bytes): its identity."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().contiguous().cpu().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()
