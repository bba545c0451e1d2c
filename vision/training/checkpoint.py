"""Atomic, pickle-free training checkpoints.

A checkpoint is ONE safetensors file: every tensor of the (nested) state goes into the tensor
table, everything else (numbers, strings, lists, dicts with int keys, tuples) into a JSON
skeleton stored in the file's metadata. It is written to a temporary file in the same folder,
flushed to disk and moved into place with `os.replace`, so a crash never leaves a half-written
checkpoint under the final name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from xmcommon.files import atomic_write

_SKELETON_KEY = "crossmodal.checkpoint"
_FORMAT_VERSION = 1


def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}:{path}"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}}
        return {"__items__": [[_encode(k, tensors, path), _encode(v, tensors, f"{path}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ValueError(f"checkpoint state at {path or '<root>'} has a {type(obj).__name__}; only tensors, "
                     "numbers, strings, None, lists, tuples and dicts can be saved")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _decode(v, tensors) for k, v in obj["__dict__"].items()}
        if "__items__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    return obj


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write `state` (nested dicts/lists of tensors and JSON values) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, tensors, "")
    metadata = {_SKELETON_KEY: json.dumps({"version": _FORMAT_VERSION, "state": skeleton})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for malformed files
        raise ValueError(f"{path} is not a readable safetensors checkpoint: {err}") from err
    if _SKELETON_KEY not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a training checkpoint (no '{_SKELETON_KEY}' metadata)")
    payload = json.loads(metadata[_SKELETON_KEY])
    if payload.get("version") != _FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {payload.get('version')} is not supported (expected {_FORMAT_VERSION})")
    return _decode(payload["state"], tensors)
