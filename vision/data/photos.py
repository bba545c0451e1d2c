"""The deterministic build / held-out split of labelled photos (the default model never sees held-out ones)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .images import LabelledImage

HOLDOUT_BUCKETS = 4  # one photo in four (by name hash) is held out from every build


def is_held_out(photo: LabelledImage) -> bool:
    """True for the photos no build may see: sha256 of the file name, first byte mod HOLDOUT_BUCKETS == 0."""
    return hashlib.sha256(photo.path.name.encode()).digest()[0] % HOLDOUT_BUCKETS == 0


def split_photos(photos: Sequence[LabelledImage]) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(build photos, held-out photos), deterministic and independent of the folder's location."""
    return [p for p in photos if not is_held_out(p)], [p for p in photos if is_held_out(p)]
