"""Labelled image folders: ImageFolder layout (one sub-folder per class) or flat ``{wnid}_{name}.JPEG`` files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from timm.data import ImageNetInfo

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    class_id: int


@lru_cache(maxsize=1)
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(ImageNetInfo().label_names())}


def class_id_of(name: str, where: str) -> int:
    """An ImageNet-1k wnid (``n02123045``) or a plain integer class id -> the class id."""
    if name.isdigit():
        return int(name)
    if name in _wnid_index():
        return _wnid_index()[name]
    raise ValueError(f"{where}: expected an ImageNet wnid (like 'n02123045') or an integer class id, got {name!r}")


def list_labelled_images(folder: str | Path) -> list[LabelledImage]:
    """Images with labels, sorted by path: sub-folders named by wnid/class id, else files named ``{wnid}_*``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} not found")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    items: list[LabelledImage] = []
    if subdirs:
        for sub in subdirs:
            label = class_id_of(sub.name, f"class folder {sub}")
            items += [LabelledImage(p, label) for p in sorted(sub.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    else:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(LabelledImage(path, class_id_of(path.name.split("_", 1)[0], f"image {path.name}")))
    if not items:
        raise ValueError(f"image folder {folder} holds no images ({'/'.join(IMAGE_SUFFIXES)}) in the "
                         "ImageFolder layout or named '{wnid}_{name}'")
    return items


def read_cue_csv(path: str | Path) -> dict[str, str]:
    """``image,cue`` rows -> {image file name: cue}; a cue naming an audio file becomes its absolute path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cue CSV {path} not found")
    cues: dict[str, str] = {}
    with path.open(newline="") as handle:
        for row_number, row in enumerate(csv.reader(handle), start=1):
            if not row or (row_number == 1 and [c.strip().lower() for c in row[:2]] == ["image", "cue"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path}, row {row_number}: expected 'image,cue_audio_or_text', got {row}")
            image, cue = row[0].strip(), row[1].strip()
            if cue.lower().endswith(AUDIO_SUFFIXES):
                audio = (path.parent / cue).resolve()
                if not audio.is_file():
                    raise FileNotFoundError(f"{path}, row {row_number}: audio cue {audio} not found")
                cue = str(audio)
            cues[Path(image).name] = cue
    if not cues:
        raise ValueError(f"cue CSV {path} has no rows")
    return cues
