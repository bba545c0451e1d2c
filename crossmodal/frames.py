"""Frames in every form a user or a robot has them -> the model's input tensor.

Accepted frames: image file paths, PIL images (any mode: 16-bit and float images are scaled to 8 bit,
not saturated), numpy ``HxWx3`` uint8 arrays (RGB, or BGR from OpenCV with ``bgr=True``) and torch
``3xHxW`` tensors (uint8, or float in [0, 1], rounded to 8 bit so that every form of the same picture
gives the same input). Preprocessing is the model's own
eval transform, ``vision.data.eval_transform(model.data_config())``: the same pipeline as every
evaluation, from the same loader (``vision.data.load_rgb``) for files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from vision.data import eval_transform, load_rgb
from vision.data.images import check_size, to_rgb

Frame = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]


def to_pil(frame: Frame, bgr: bool = False) -> Image.Image:
    """One frame as an RGB PIL image (see the module docstring for the accepted forms)."""
    if isinstance(frame, (str, os.PathLike)):
        _no_bgr(bgr, "an image file")
        return load_rgb(frame)
    if isinstance(frame, Image.Image):
        _no_bgr(bgr, "a PIL image")
        check_size(frame, "PIL image")
        return to_rgb(frame, "PIL image")
    if isinstance(frame, np.ndarray):
        return Image.fromarray(_check_array(frame, bgr))
    if isinstance(frame, torch.Tensor):
        _no_bgr(bgr, "a torch tensor")
        return Image.fromarray(_tensor_to_array(frame))
    raise ValueError(
        f"unsupported frame type {type(frame).__name__}: expected an image path, a PIL image, "
        "a numpy HxWx3 uint8 array or a torch 3xHxW tensor"
    )


def split_batch(frames: Frame | Sequence[Frame]) -> list[Frame]:
    """A batch of frames as a list: a list/tuple, a numpy ``BxHxWx3`` array or a torch ``Bx3xHxW`` tensor."""
    if isinstance(frames, (list, tuple)):
        out = list(frames)
    elif isinstance(frames, np.ndarray) and frames.ndim == 4:
        out = list(frames)
    elif isinstance(frames, torch.Tensor) and frames.ndim == 4:
        out = list(frames.unbind(0))
    else:
        raise ValueError(
            "a batch must be a list of frames, a numpy BxHxWx3 uint8 array or a torch Bx3xHxW tensor, "
            f"got {_describe(frames)}"
        )
    if not out:
        raise ValueError("the batch of frames is empty")
    return out


class FramePreprocessor:
    """Turns frames into the normalised ``(B, 3, S, S)`` input of one model (thread-safe, stateless)."""

    def __init__(self, data_config: Mapping[str, Any]):
        self.data_config = dict(data_config)
        self.transform = eval_transform(self.data_config)

    @classmethod
    def for_model(cls, model: torch.nn.Module) -> FramePreprocessor:
        return cls(model.data_config())

    @property
    def image_size(self) -> int:
        return int(self.data_config["input_size"][-1])

    def __call__(self, frames: Sequence[Frame], bgr: bool = False) -> torch.Tensor:
        return torch.stack([self.transform(to_pil(f, bgr)) for f in frames])


def _no_bgr(bgr: bool, what: str) -> None:
    if bgr:
        raise ValueError(f"bgr=True applies to numpy frames (OpenCV), not to {what}")


def _check_array(array: np.ndarray, bgr: bool) -> np.ndarray:
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"a numpy frame must be HxWx3 (RGB, or BGR with bgr=True), got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"a numpy frame must have dtype uint8, got {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"the numpy frame is empty (shape {array.shape})")
    return np.ascontiguousarray(array[:, :, ::-1] if bgr else array)


def _tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"a torch frame must be 3xHxW (RGB), got shape {tuple(tensor.shape)}")
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f"the torch frame is empty (shape {tuple(tensor.shape)})")
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.uint8:
        pixels = tensor
    elif tensor.is_floating_point():
        if not torch.isfinite(tensor).all() or tensor.min() < 0 or tensor.max() > 1:
            raise ValueError("a float torch frame must hold finite values in [0, 1]")
        pixels = (tensor * 255).round().to(torch.uint8)
    else:
        raise ValueError(f"a torch frame must be uint8 or float in [0, 1], got {tensor.dtype}")
    return pixels.permute(1, 2, 0).contiguous().numpy()


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else type(value).__name__
