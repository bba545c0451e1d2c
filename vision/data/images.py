"""Image files: the one set of image suffixes, the one labelled-image lister and the one loader.

Labelled folders are either ImageFolder trees (one sub-folder per class, named by ImageNet wnid or
integer class id) or flat folders of ``{wnid}_{name}.JPEG`` files (the ImageNet sample photos).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .imagenet import class_id_of

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


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
    """Open an image file as RGB; FileNotFoundError when missing, ValueError when unreadable or empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} not found")
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    if rgb.width == 0 or rgb.height == 0:
        raise ValueError(f"image file {path} is empty ({rgb.width}x{rgb.height} pixels)")
    return rgb
