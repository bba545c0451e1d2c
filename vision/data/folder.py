"""ImageFolder datasets for training and evaluating SeqPar models.

Class folders named by ImageNet wnid (Imagenette, Imagewoof, ImageNet100, ImageNet-1k layouts) map to
their ImageNet class index and description, so a model trained on a subset knows its classes'
ImageNet ids and names. Other folder names get label ids 0..N-1 in sorted order.

Unreadable images never crash an epoch: the sample is replaced by the next readable one and counted
(the third item of each sample), so batch sizes and distributed step counts stay equal.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .imagenet import imagenet_description, wnid_index
from .images import IMAGE_SUFFIXES, image_files, load_rgb

_MAX_CONSECUTIVE_BAD = 64
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassSet:
    """The classes of a dataset: folder names, label ids (ImageNet indices for wnid folders) and names."""

    folders: tuple[str, ...]
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    imagenet: bool

    def to_dict(self) -> dict:
        return {"folders": list(self.folders), "class_ids": list(self.class_ids),
                "class_names": list(self.class_names), "imagenet": self.imagenet}


def _class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist (expected an ImageFolder tree: <root>/<class>/<image>)")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"dataset folder {root} has no class sub-folders (expected <root>/<class>/<image>)")
    return folders


def class_set(folders: Sequence[str]) -> ClassSet:
    """Label ids and names for `folders`: ImageNet indices when every folder is an ImageNet wnid."""
    wnids = wnid_index()
    if all(f in wnids for f in folders):
        ids = tuple(wnids[f] for f in folders)
        return ClassSet(tuple(folders), ids, tuple(imagenet_description(i) for i in ids), True)
    return ClassSet(tuple(folders), tuple(range(len(folders))), tuple(folders), False)


def select_classes(folders: Sequence[str], classes: Sequence[int | str] | None) -> list[str]:
    """The folders named by `classes`: positions in sorted order (ints) or folder names (str)."""
    if classes is None:
        return list(folders)
    chosen: list[str] = []
    for c in classes:
        if isinstance(c, int) and not isinstance(c, bool):
            if not 0 <= c < len(folders):
                raise ValueError(f"class position {c} is out of range: the dataset has {len(folders)} classes (0..{len(folders) - 1})")
            chosen.append(folders[c])
        elif isinstance(c, str) and c in folders:
            chosen.append(c)
        else:
            raise ValueError(f"class {c!r} is not a class folder of the dataset (known: {', '.join(folders[:5])}, ...)")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"class filter {list(classes)} names a class twice")
    return sorted(chosen)


class ImageFolderDataset(torch.utils.data.Dataset):
    """An ImageFolder split whose samples are `(image, target, n_unreadable_skipped)`.

    `target` is the position of the class in `classes` (the model's output index). An index may be
    given as `(index, epoch)`: the random augmentation of that sample is then seeded by
    `(seed, epoch, index)`, which makes training independent of worker count and exactly resumable.
    """

    def __init__(self, root: str | Path, classes: ClassSet, transform: Callable | None = None, seed: int = 0):
        self.root = Path(root)
        self.classes = classes
        self.transform = transform
        self.seed = seed
        present = set(_class_folders(self.root))
        missing = [f for f in classes.folders if f not in present]
        if missing:
            raise ValueError(f"{self.root}: class folders missing: {', '.join(missing[:10])}"
                             f"{' ...' if len(missing) > 10 else ''} ({len(missing)} of {len(classes.folders)} classes)")
        self.samples: list[tuple[str, int]] = []
        for target, folder in enumerate(classes.folders):
            files = image_files(self.root / folder, recursive=True)
            if not files:
                raise ValueError(f"class folder {self.root / folder} contains no images ({', '.join(IMAGE_SUFFIXES)})")
            self.samples.extend((str(p), target) for p in files)
        self._bad: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: str) -> Image.Image | None:
        try:
            return load_rgb(path)
        except (OSError, ValueError) as err:
            if path not in self._bad:
                self._bad.add(path)
                _log.warning("skipping unreadable image %s (%s)", path, err)
            return None

    def __getitem__(self, item: int | tuple[int, int]):
        index, epoch = item if isinstance(item, tuple) else (item, None)
        skipped = 0
        while True:
            path, target = self.samples[index]
            img = self._load(path)
            if img is not None:
                break
            skipped += 1
            if skipped >= min(_MAX_CONSECUTIVE_BAD, len(self.samples)):
                raise ValueError(f"{skipped} consecutive unreadable images in {self.root} (last: {path}); is the dataset intact?")
            index = (index + 1) % len(self.samples)
        if self.transform is not None:
            if epoch is None:
                img = self.transform(img)
            else:
                img = _seeded_call(self.transform, img, (self.seed, epoch, index))
        return img, target, skipped


def _seeded_call(fn: Callable, arg, key: tuple[int, ...]):
    """Run `fn(arg)` with python/numpy/torch RNGs seeded from `key`, restoring the caller's RNG states."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        return fn(arg)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class EpochSampler(torch.utils.data.Sampler):
    """A shuffling (or sequential) sampler that shards across ranks and yields `(index, epoch)`.

    Shuffling depends only on `(seed, epoch)`; `start` skips the first samples of this rank's
    shard (resuming mid-epoch). With `drop_last` every rank gets the same number of samples;
    without it (evaluation) ranks take disjoint strided shards and nothing is duplicated.
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.drop_last:
            order = order[: self.size - self.size % self.world_size]
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._indices()) - self.start

    def __iter__(self):
        return iter([(i, self.epoch) for i in self._indices()[self.start :]])


def collate(batch):
    """Stack `(image, target, skipped)` samples into `(images, targets, total_skipped)`."""
    images = torch.stack([b[0] for b in batch])
    targets = torch.tensor([b[1] for b in batch], dtype=torch.long)
    return images, targets, sum(b[2] for b in batch)


def load_splits(root: str | Path, *, train_dir: str = "train", val_dir: str = "val",
                classes: Sequence[int | str] | None = None) -> ClassSet:
    """The class set of `root/train_dir`, optionally filtered, checked to be present in `root/val_dir`."""
    root = Path(root)
    train_folders = _class_folders(root / train_dir)
    chosen = select_classes(train_folders, classes)
    val_folders = set(_class_folders(root / val_dir))
    missing = [f for f in chosen if f not in val_folders]
    if missing:
        raise ValueError(f"classes missing from {root / val_dir}: {', '.join(missing[:10])}"
                         f"{' ...' if len(missing) > 10 else ''} ({len(missing)} of {len(chosen)})")
    return class_set(chosen)
