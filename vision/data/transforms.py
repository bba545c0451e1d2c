"""The one image pipeline: a model's eval transform from its data config, and the training augmentation.

Every evaluator, benchmark and the guided product preprocess with :func:`eval_transform` on the
model's own ``data_config()`` (``SeqParConfig.preprocessing`` at ``image_size``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from PIL import Image
from timm.data import create_transform

Transform = Callable[[Image.Image], torch.Tensor]


def eval_transform(data_config: Mapping[str, Any]) -> Transform:
    """timm's eval transform: resize the short side to size / crop_pct, crop, to [0, 1], normalise."""
    return create_transform(**dict(data_config), is_training=False)


def train_transform(data_config: Mapping[str, Any], augment: Mapping[str, Any] | None = None) -> Transform:
    """timm's training pipeline (random resized crop, flip, RandAugment, ...) with the model's mean/std.

    ``augment`` holds timm ``create_transform`` options (``auto_augment``, ``interpolation``, ``scale``...).
    """
    augment = dict(augment or {})
    for key in ("scale", "ratio"):
        if augment.get(key) is not None:
            augment[key] = tuple(augment[key])
    options = {"input_size": data_config["input_size"], "mean": data_config["mean"], "std": data_config["std"],
               "interpolation": data_config["interpolation"], **augment}
    return create_transform(**options, is_training=True)
