"""ImageNet class metadata (index, wnid, names, WordNet gloss), offline from timm's data files
(:mod:`xmcommon.imagenet`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

from xmcommon.imagenet import imagenet_definition, imagenet_lemmas, imagenet_wnids


@dataclass(frozen=True)
class ImageNetClass:
    """One class of a model's class list: its index there, WordNet id, names and gloss."""

    index: int
    wnid: str
    names: tuple[str, ...]
    gloss: str

    @property
    def name(self) -> str:
        """The first (most common) name, e.g. ``"tabby"``."""
        return self.names[0]

    @property
    def text(self) -> str:
        """The text that represents the class for sentence embeddings: names and gloss."""
        return f"{', '.join(self.names)}: {self.gloss}"

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def _imagenet_1k() -> dict[str, ImageNetClass]:
    return {wnid: ImageNetClass(index, wnid, tuple(n.strip() for n in imagenet_lemmas(wnid).split(",")),
                                imagenet_definition(wnid).strip())
            for index, wnid in enumerate(imagenet_wnids())}


def imagenet_classes(wnids: Sequence[str] | None = None) -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet-1k classes in timm order, or a model's own class list given as wnids.

    With ``wnids``, class ``i`` of the result is ``wnids[i]`` (index = position in that list), so a
    model trained on a subset (e.g. Imagenette) keeps its own indices.
    """
    table = _imagenet_1k()
    if wnids is None:
        return tuple(table.values())
    wnids = list(wnids)
    unknown = [w for w in wnids if w not in table]
    if unknown:
        raise ValueError(f"wnids {unknown[:5]} are not ImageNet-1k classes (expected wnids like 'n02123045')")
    if len(set(wnids)) != len(wnids):
        raise ValueError("wnids contains duplicates; expected each class once")
    if not wnids:
        raise ValueError("wnids is empty; expected at least one ImageNet wnid")
    return tuple(ImageNetClass(i, w, table[w].names, table[w].gloss) for i, w in enumerate(wnids))
