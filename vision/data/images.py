"""Image files: the one set of image suffixes, the one labelled-image lister and the one loader.

Labelled folders are either ImageFolder trees (one sub-folder per class, named by ImageNet wnid or
integer class id) or flat folders of ``{wnid}_{name}.JPEG`` files (the ImageNet sample photos).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .imagenet import class_id_of

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
# Larger images are refused before they are decoded (decompression bombs): Pillow's own limit, about 9459 x 9459.
MAX_IMAGE_PIXELS = 89_478_485
_HIGH_BIT_DEPTH = {"I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32}


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image files in ``folder`` (and its sub-folders with ``recursive``), sorted by path."""
    folder = Path(folder)
    return sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir()) if is_image_file(p))


@dataclass(frozen=True)
class LabelledImage:
    """An image file and its class id (an ImageNet-1k index for wnid names)."""

    path: Path
    class_id: int

    def to_dict(self) -> dict:
        return {"path": str(self.path), "class_id": self.class_id}


def list_labelled_images(folder: str | os.PathLike) -> list[LabelledImage]:
    """Images with labels, sorted by path: sub-folders named by wnid / class id, else files named ``{wnid}_*``.

    Raises FileNotFoundError for a missing folder and ValueError for an unknown label or no images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} not found")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    items: list[LabelledImage] = []
    if subdirs:
        for sub in subdirs:
            label = class_id_of(sub.name, f"class folder {sub}")
            items += [LabelledImage(p, label) for p in image_files(sub)]
    else:
        items = [LabelledImage(p, class_id_of(p.name.split("_", 1)[0], f"image {p.name}")) for p in image_files(folder)]
    if not items:
        raise ValueError(f"image folder {folder} holds no images ({'/'.join(IMAGE_SUFFIXES)}) in the ImageFolder "
                         "layout or named '{wnid}_{name}'")
    return items


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as 8-bit RGB (see :func:`to_rgb`); FileNotFoundError when missing, ValueError when
    unreadable, empty or larger than ``MAX_IMAGE_PIXELS``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_size(image, str(path))
                return to_rgb(image, str(path))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"image file {path} is too large to decode safely: {err}") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:  # SyntaxError: Pillow's broken-header signal
        raise ValueError(f"cannot read image file {path}: {err}") from err


def check_size(image: Image.Image, what: str) -> None:
    """ValueError naming ``what`` for an image with no pixels or more than ``MAX_IMAGE_PIXELS``."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{what} is empty ({image.width}x{image.height} pixels)")
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{what} has {image.width}x{image.height} pixels, more than the limit of "
                         f"{MAX_IMAGE_PIXELS:,} (vision.data.images.MAX_IMAGE_PIXELS)")


def to_rgb(image: Image.Image, what: str = "image") -> Image.Image:
    """The image as 8-bit RGB, scaling high-bit-depth pixels instead of saturating them.

    16-bit grayscale (``I;16*``) and 32-bit integer (``I``) images are scaled to 8 bits by their type's range
    (an ``I`` image whose values fit in 16 bits, as 16-bit PNGs often open, by the 16-bit range); float
    (``F``) images are taken as [0, 1]. Pillow already reads 16-bit-per-channel RGB files as 8-bit RGB.
    Palette, alpha, CMYK and other modes go through Pillow's own conversion.
    """
    if image.mode in _HIGH_BIT_DEPTH or image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            scale = 1.0
        else:
            bits = 16 if _HIGH_BIT_DEPTH[image.mode] == 16 or pixels.max(initial=0) <= 65535 else 32
            scale = float(2**bits - 1)
        if not np.isfinite(pixels).all():
            raise ValueError(f"{what} holds NaN or infinite pixel values")
        image = Image.fromarray(np.round(np.clip(pixels / scale, 0, 1) * 255).astype(np.uint8), mode="L")
    return image.convert("RGB")
