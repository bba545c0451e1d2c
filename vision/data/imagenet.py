"""ImageNet-1k class ids: wnid <-> index (timm's sorted-wnid order) and class descriptions, offline from timm.

timm is imported when a table is first needed, not with the module: ``vision.data.images`` (the product's
image loader) imports this module, and ``timm.data`` imports torchvision (about 1.3 s of cold start).
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any


@lru_cache(maxsize=1)
def wnid_index() -> dict[str, int]:
    """wnid -> ImageNet-1k class index (position in sorted wnid order)."""
    return {wnid: i for i, wnid in enumerate(_info().label_names())}


@cache
def imagenet_description(index: int) -> str:
    """The ImageNet-1k description of class ``index`` (e.g. 281 -> 'tabby, tabby cat')."""
    return _info().index_to_description(index)


@lru_cache(maxsize=1)
def _info() -> Any:
    """timm's ImageNet-1k tables (``timm.data.ImageNetInfo``), loaded once."""
    from timm.data import ImageNetInfo

    return ImageNetInfo()


def class_id_of(name: str, where: str) -> int:
    """An ImageNet-1k wnid (``n02123045``) or a plain integer class id -> the class id; ValueError naming ``where``."""
    if name.isdigit():
        return int(name)
    if name in wnid_index():
        return wnid_index()[name]
    raise ValueError(f"{where}: expected an ImageNet wnid (like 'n02123045') or an integer class id, got {name!r}")
