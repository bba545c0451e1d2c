"""A deterministic procedural 10-class image set (shapes x colors x textures) as an ImageFolder tree.

Each class is one (shape, color, texture) triple; classes share attributes pairwise, so telling
them apart needs all three cues. Each image varies position, size, rotation, color shade,
texture phase and a noisy background; image `i` of class `c` in split `s` depends only on
`(seed, s, c, i)`, so the same command always writes the same bytes.

    python -m vision.synthetic --out data/synthetic --train-per-class 100 --val-per-class 30 --size 64
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from xmcommon.files import atomic_write, atomic_write_text

COLORS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
CLASSES: tuple[tuple[str, str, str], ...] = (
    ("circle", "red", "solid"),
    ("circle", "blue", "stripes"),
    ("square", "red", "stripes"),
    ("square", "green", "solid"),
    ("triangle", "blue", "solid"),
    ("triangle", "yellow", "dots"),
    ("cross", "green", "dots"),
    ("cross", "yellow", "solid"),
    ("ring", "red", "checker"),
    ("ring", "blue", "dots"),
)
SPLITS = {"train": 0, "val": 1}


def class_folder(index: int) -> str:
    """Folder name of class `index`, e.g. '0_circle_red_solid'."""
    return f"{index}_" + "_".join(CLASSES[index])


def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Mask of `shape` in rotated unit coordinates (the shape spans about [-1, 1])."""
    r = np.sqrt(xx**2 + yy**2)
    if shape == "circle":
        return r <= 1.0
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "square":
        return (np.abs(xx) <= 0.85) & (np.abs(yy) <= 0.85)
    if shape == "triangle":
        return (yy <= 0.8) & (yy >= -0.9 + 2.0 * np.abs(xx) * 0.95)
    if shape == "cross":
        return ((np.abs(xx) <= 0.3) & (np.abs(yy) <= 1.0)) | ((np.abs(yy) <= 0.3) & (np.abs(xx) <= 1.0))
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, xx: np.ndarray, yy: np.ndarray, phase: float) -> np.ndarray:
    """Brightness factor in [0.35, 1] for `texture` at rotated unit coordinates."""
    if texture == "solid":
        return np.ones_like(xx)
    if texture == "stripes":
        return np.where(np.sin((xx * 4.0 + phase) * np.pi) > 0, 1.0, 0.35)
    if texture == "checker":
        return np.where((np.floor(xx * 2.5 + phase) + np.floor(yy * 2.5 + phase)) % 2 == 0, 1.0, 0.35)
    if texture == "dots":
        fx, fy = (xx * 2.5 + phase) % 1.0 - 0.5, (yy * 2.5 + phase) % 1.0 - 0.5
        return np.where(fx**2 + fy**2 < 0.09, 0.35, 1.0)
    raise ValueError(f"unknown texture {texture!r}")


def render(class_index: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """One (size, size, 3) uint8 image of class `class_index`."""
    shape, color, texture = CLASSES[class_index]
    bg_level = rng.uniform(20, 110)
    bg_tint = rng.uniform(-20, 20, size=3)
    img = np.clip(bg_level + bg_tint + rng.normal(0, 12, size=(size, size, 3)), 0, 255)
    radius = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(radius, size - radius, size=2)
    angle = rng.uniform(0, 2 * np.pi) if shape != "circle" else 0.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = (xs - cx) / radius, (ys - cy) / radius
    xx = np.cos(angle) * dx + np.sin(angle) * dy
    yy = -np.sin(angle) * dx + np.cos(angle) * dy
    mask = _shape_mask(shape, xx, yy)
    shade = np.clip(np.array(COLORS[color]) * rng.uniform(0.8, 1.1) + rng.uniform(-15, 15, size=3), 0, 255)
    tex = _texture(texture, xx, yy, rng.uniform(0, 1))
    fg = shade[None, None, :] * tex[..., None]
    img = np.where(mask[..., None], fg, img)
    return np.clip(img + rng.normal(0, 6, size=img.shape), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SyntheticSpec:
    """What `generate` wrote."""

    root: str
    train_per_class: int
    val_per_class: int
    size: int
    seed: int
    classes: tuple[str, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def _write_class(out: Path, split: str, c: int, n: int, size: int, seed: int) -> None:
    folder = out / split / class_folder(c)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng([seed, SPLITS[split], c, i])
        image = Image.fromarray(render(c, rng, size))
        atomic_write(folder / f"{i:05d}.png", lambda tmp: image.save(tmp, format="PNG"))


def generate(out: str | Path, *, train_per_class: int = 100, val_per_class: int = 30, size: int = 64,
             seed: int = 0, processes: int = 1) -> SyntheticSpec:
    """Write `out/train/<class>/*.png` and `out/val/<class>/*.png` (PNG, lossless, deterministic).

    `processes` > 1 writes the class folders in parallel (same bytes as serial).
    """
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(f"train_per_class and val_per_class must be >= 1, got {train_per_class}, {val_per_class}")
    out = Path(out)
    counts = {"train": train_per_class, "val": val_per_class}
    jobs = [(out, split, c, n, size, seed) for split, n in counts.items() for c in range(len(CLASSES))]
    if processes > 1:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            pool.starmap(_write_class, jobs)
    else:
        for job in jobs:
            _write_class(*job)
    spec = SyntheticSpec(str(out), train_per_class, val_per_class, size, seed,
                         tuple(class_folder(c) for c in range(len(CLASSES))))
    atomic_write_text(out / "synthetic.json", json.dumps(spec.to_dict(), indent=2))
    return spec
