"""ImageNet-1k class ids: wnid <-> index (timm's sorted-wnid order) and class descriptions, offline from timm's
data files (:mod:`xmcommon.imagenet`, which reads them without importing timm)."""

from __future__ import annotations

from functools import lru_cache

from xmcommon.imagenet import imagenet_lemmas, imagenet_wnids


@lru_cache(maxsize=1)
def wnid_index() -> dict[str, int]:
    """wnid -> ImageNet-1k class index (position in sorted wnid order)."""
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


def imagenet_description(index: int) -> str:
    """The ImageNet-1k description of class ``index`` (e.g. 281 -> 'tabby, tabby cat')."""
    wnids = imagenet_wnids()
    if not 0 <= index < len(wnids):
        raise ValueError(f"ImageNet-1k class index {index} is out of range 0..{len(wnids) - 1}")
    return imagenet_lemmas(wnids[index])


def class_id_of(name: str, where: str) -> int:
    """An ImageNet-1k wnid (``n02123045``) or a plain integer class id -> the class id; ValueError naming ``where``."""
    if name.isdigit():
        return int(name)
    if name in wnid_index():
        return wnid_index()[name]
    raise ValueError(f"{where}: expected an ImageNet wnid (like 'n02123045') or an integer class id, got {name!r}")
