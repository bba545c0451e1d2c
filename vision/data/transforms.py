"""The one image pipeline: a model's eval transform from its data config, and the training augmentation.

Every evaluator, benchmark and the guided product preprocess with :func:`eval_transform` on the
model's own ``data_config()`` (``SeqParConfig.preprocessing`` at ``image_size``).

The eval path is native (PIL, numpy and torch only) because it is on the CLI's cold start:
``timm.data.create_transform`` needs torchvision, and ``import torchvision`` alone costs 1.3 to 1.6 s
after ``import torch`` here (``torchvision.ops`` imports ``torch._dynamo``). The reference it is tested against,
bit for bit (``torch.equal``, ``tests/test_eval_transform.py``), is timm's
``create_transform(**data_config, is_training=False)`` (``transforms_imagenet_eval``: torchvision's
``Resize`` / ``CenterCrop``, timm's ``ResizeKeepRatio`` / ``CenterCropOrPad``, ``ToTensor``,
``Normalize``), whose size and offset rounding :class:`EvalTransform` reproduces step by step.
Training augmentation stays timm's: :func:`train_transform` imports timm when called.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

Transform = Callable[[Image.Image], torch.Tensor]

# The settings vision.config.Preprocessing allows (its CROP_MODES / INTERPOLATIONS), with PIL's filters.
CROP_MODES = ("center", "squash", "border")
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
              "nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
              "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS}
DATA_CONFIG_KEYS = ("input_size", "mean", "std", "crop_pct", "crop_mode", "interpolation")


@dataclass(frozen=True)
class EvalTransform:
    """RGB PIL image -> normalised float32 ``(3, H, W)`` tensor, as timm's eval transform computes it.

    ``center``: resize the short side to ``scale_size`` (the long side truncated to keep the aspect ratio),
    centre-crop ``size``; ``squash``: resize to ``scale_size`` in both sides, centre-crop; ``border``: resize
    the long side to ``scale_size`` (both sides rounded), pad with the mean colour to ``size`` and centre-crop.
    Then divide by 255, subtract ``mean`` and divide by ``std`` per channel, in float32.
    Picklable and stateless (one object serves many threads and data-loader workers).
    """

    size: tuple[int, int]  # (height, width) of the output
    scale_size: tuple[int, int]  # (height, width): floor(size / crop_pct)
    crop_mode: str
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            raise TypeError(f"eval_transform expects a PIL image, got {type(image).__name__}")
        if image.mode != "RGB":
            raise ValueError(f"eval_transform expects an RGB image, got mode {image.mode!r} "
                             "(convert with vision.data.images.to_rgb, as vision.data.load_rgb does)")
        if image.width == 0 or image.height == 0:
            raise ValueError(f"eval_transform got an empty image ({image.width}x{image.height} pixels)")
        fill: tuple[int, ...] = (0, 0, 0)
        if self.crop_mode == "squash":
            image = self._resize(image, self.scale_size)
        elif self.crop_mode == "border":
            image = self._resize(image, self._keep_ratio(image, longest=1.0))
            fill = tuple(round(255 * v) for v in self.mean)  # timm: [round(255 * v) for v in mean]
        elif self.scale_size[0] == self.scale_size[1]:  # center: torchvision's Resize(int), short side
            image = self._resize(image, _short_side(image, self.scale_size[0]))
        else:  # center at a non-square size: timm's ResizeKeepRatio(longest=0)
            image = self._resize(image, self._keep_ratio(image, longest=0.0))
        image = _center_crop_or_pad(image, self.size, fill)
        # torchvision's to_tensor (uint8 HWC -> CHW float32 / 255), then Normalize: (x - mean) / std
        pixels = torch.from_numpy(np.array(image, np.uint8, copy=True)).view(image.height, image.width, 3)
        x = pixels.permute((2, 0, 1)).contiguous().to(dtype=torch.float32).div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return x.sub_(mean).div_(std)

    def _keep_ratio(self, image: Image.Image, longest: float) -> tuple[int, int]:
        """timm's ``ResizeKeepRatio.get_params`` without randomness: (height, width)."""
        ratio_h, ratio_w = image.height / self.scale_size[0], image.width / self.scale_size[1]
        ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
        height, width = (round(x * 1.0 / ratio) for x in (image.height, image.width))
        if height < 1 or width < 1:
            raise ValueError(f"a {image.width}x{image.height} image is too thin for crop_mode {self.crop_mode!r} at "
                             f"scale size {self.scale_size[1]}x{self.scale_size[0]}: it would resize to "
                             f"{width}x{height} pixels")
        return height, width

    def _resize(self, image: Image.Image, size: tuple[int, int]) -> Image.Image:
        """torchvision's ``resize`` of a PIL image to (height, width): unchanged when already that size."""
        if (image.height, image.width) == size:
            return image
        return image.resize((size[1], size[0]), RESAMPLING[self.interpolation])


def _short_side(image: Image.Image, short: int) -> tuple[int, int]:
    """torchvision's ``Resize(short)`` output (height, width): the long side is ``int(short * long / short_side)``."""
    h, w = image.height, image.width
    old_short, old_long = (w, h) if w <= h else (h, w)
    new_long = int(short * old_long / old_short)
    return (new_long, short) if w <= h else (short, new_long)


def _center_crop_or_pad(image: Image.Image, size: tuple[int, int], fill: tuple[int, ...]) -> Image.Image:
    """torchvision's ``center_crop`` (fill 0) / timm's ``center_crop_or_pad`` (fill: the mean colour)."""
    crop_height, crop_width = size
    if crop_width > image.width or crop_height > image.height:
        padding_ltrb = (
            (crop_width - image.width) // 2 if crop_width > image.width else 0,
            (crop_height - image.height) // 2 if crop_height > image.height else 0,
            (crop_width - image.width + 1) // 2 if crop_width > image.width else 0,
            (crop_height - image.height + 1) // 2 if crop_height > image.height else 0,
        )
        image = ImageOps.expand(image, border=padding_ltrb, fill=fill)
        if image.size == (crop_width, crop_height):
            return image
    top = round((image.height - crop_height) / 2.0)  # torchvision: int(round(...)), half to even
    left = round((image.width - crop_width) / 2.0)
    return image.crop((left, top, left + crop_width, top + crop_height))


def eval_transform(data_config: Mapping[str, Any]) -> Transform:
    """timm's eval transform: resize the short side to size / crop_pct, crop, to [0, 1], normalise.

    ``data_config`` holds exactly ``input_size`` (``(3, H, W)``, ``(H, W)`` or an int), ``mean``, ``std``,
    ``crop_pct`` (in (0, 1]), ``crop_mode`` (``center``, ``squash``, ``border``) and ``interpolation``
    (``bilinear``, ``bicubic``, ``nearest``, ``box``, ``hamming``, ``lanczos``): a model's ``data_config()``.
    The transform takes RGB PIL images and gives the tensors ``timm.data.create_transform(**data_config)``
    gives, bit for bit. ValueError names a missing, unknown or invalid setting and what is allowed.
    """
    config = dict(data_config)
    missing = [k for k in DATA_CONFIG_KEYS if k not in config]
    unknown = sorted(set(config) - set(DATA_CONFIG_KEYS))
    if missing or unknown:
        raise ValueError(f"data_config needs exactly the keys {list(DATA_CONFIG_KEYS)}: "
                         + "; ".join(([f"missing {missing}"] if missing else [])
                                     + ([f"unknown {unknown}"] if unknown else [])))
    if config["crop_mode"] not in CROP_MODES:
        raise ValueError(f"data_config crop_mode must be one of {CROP_MODES}, got {config['crop_mode']!r}")
    if config["interpolation"] not in RESAMPLING:
        raise ValueError(f"data_config interpolation must be one of {tuple(RESAMPLING)}, "
                         f"got {config['interpolation']!r}")
    crop_pct = config["crop_pct"]
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, numbers.Real) or not 0 < crop_pct <= 1:
        raise ValueError(f"data_config crop_pct must be a number in (0, 1], got {crop_pct!r}")
    size = _input_size(config["input_size"])
    mean, std = _channels(config["mean"], "mean"), _channels(config["std"], "std")
    if not all(torch.tensor(std, dtype=torch.float32) > 0):
        raise ValueError(f"data_config std must be positive (as float32), got {config['std']!r}")
    scale_size = (math.floor(size[0] / crop_pct), math.floor(size[1] / crop_pct))  # timm's transforms_imagenet_eval
    return EvalTransform(size, scale_size, config["crop_mode"], config["interpolation"], mean, std)


def _input_size(value: Any) -> tuple[int, int]:
    """(height, width) of ``input_size``: an int, ``(H, W)`` or ``(3, H, W)``; ValueError otherwise."""
    if _is_int(value):
        sizes: Any = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 3 and value[0] == 3:
        sizes = tuple(value[1:])
    else:
        sizes = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(sizes) != 2 or not all(_is_int(s) and s > 0 for s in sizes):
        raise ValueError(f"data_config input_size must be a positive int, (H, W) or (3, H, W), got {value!r}")
    return int(sizes[0]), int(sizes[1])


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _channels(value: Any, name: str) -> tuple[float, float, float]:
    """3 finite numbers (R, G, B) as floats; ValueError naming ``name`` otherwise."""
    try:
        floats = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        floats = ()
    if len(floats) != 3 or not all(math.isfinite(v) for v in floats):
        raise ValueError(f"data_config {name} must be 3 finite numbers (R, G, B), got {value!r}")
    return floats  # type: ignore[return-value]


def train_transform(data_config: Mapping[str, Any], augment: Mapping[str, Any] | None = None) -> Transform:
    """timm's training pipeline (random resized crop, flip, RandAugment, ...) with the model's mean/std.

    ``augment`` holds timm ``create_transform`` options (``auto_augment``, ``interpolation``, ``scale``...).
    """
    # timm.data needs torchvision: imported here, off the eval path (see the module docstring)
    from timm.data import create_transform

    augment = dict(augment or {})
    for key in ("scale", "ratio"):
        if augment.get(key) is not None:
            augment[key] = tuple(augment[key])
    options = {"input_size": data_config["input_size"], "mean": data_config["mean"], "std": data_config["std"],
               "interpolation": data_config["interpolation"], **augment}
    return create_transform(**options, is_training=True)
