"""Labelled ImageNet photos named `{wnid}_{name}.JPEG`, a deterministic hold-out split and eval preprocessing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from timm.data import ImageNetInfo
from torchvision.transforms import v2

PHOTO_SUFFIXES = (".jpeg", ".jpg", ".png")
HOLDOUT_BUCKETS = 4  # one photo in four (by name hash) is held out from every build


@dataclass(frozen=True)
class LabelledPhoto:
    """A photo file and its ImageNet-1k class index (position of its wnid in sorted wnid order)."""

    path: Path
    class_index: int

    def to_dict(self) -> dict:
        return {"path": str(self.path), "class_index": self.class_index}


def list_imagenet_photos(folder: str | Path) -> list[LabelledPhoto]:
    """All photos in `folder` named `{wnid}_...`, sorted by file name; raises on unknown wnids or an empty folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"images folder {folder} does not exist")
    index = {wnid: i for i, wnid in enumerate(ImageNetInfo().label_names())}
    photos = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        wnid = path.name.split("_", 1)[0]
        if wnid not in index:
            raise ValueError(f"photo {path.name!r}: expected a name '{{wnid}}_...' with an ImageNet-1k wnid, got {wnid!r}")
        photos.append(LabelledPhoto(path, index[wnid]))
    if not photos:
        raise ValueError(f"images folder {folder} holds no {'/'.join(PHOTO_SUFFIXES)} photos")
    return photos


def is_held_out(photo: LabelledPhoto) -> bool:
    """True for the photos no build may see: sha256 of the file name, first byte mod HOLDOUT_BUCKETS == 0."""
    return hashlib.sha256(photo.path.name.encode()).digest()[0] % HOLDOUT_BUCKETS == 0


def split_photos(photos: list[LabelledPhoto]) -> tuple[list[LabelledPhoto], list[LabelledPhoto]]:
    """(build photos, held-out photos), deterministic and independent of the folder's location."""
    return [p for p in photos if not is_held_out(p)], [p for p in photos if is_held_out(p)]


def eval_transform(size: int, crop_pct: float, mean: tuple, std: tuple) -> v2.Compose:
    """timm-style eval preprocessing: bicubic resize of the short side to size/crop_pct, centre crop, normalise."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(int(size / crop_pct), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB."""
    with Image.open(path) as image:
        return image.convert("RGB")
