"""ImageNet-1k class tables (wnids in timm's order, lemmas, WordNet definitions) from timm's own data files.

The files are read where timm installs them (``timm/data/_info``) without importing timm: ``import timm``
pulls in torchvision and costs about 1.8 s of the CLI's cold start, for three text files. The tables are
exactly ``timm.data.ImageNetInfo``'s (``tests/test_xmcommon.py`` compares them).
"""

from __future__ import annotations

import csv
import importlib.util
from functools import lru_cache
from pathlib import Path

SYNSETS = "imagenet_synsets.txt"
LEMMAS = "imagenet_synset_to_lemma.txt"
DEFINITIONS = "imagenet_synset_to_definition.txt"


def _info_file(name: str) -> Path:
    """A data file of timm's ``timm/data/_info`` folder; FileNotFoundError when timm or the file is missing."""
    spec = importlib.util.find_spec("timm")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the ImageNet class tables come from timm's data files: pip install timm")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this timm version keeps its ImageNet tables elsewhere")
    return path


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order (sorted wnids, as timm and torchvision number them)."""
    return tuple(_info_file(SYNSETS).read_text(encoding="utf-8").splitlines())


@lru_cache(maxsize=2)
def _table(name: str) -> dict[str, str]:
    with _info_file(name).open(encoding="utf-8", newline="") as f:
        return dict(csv.reader(f, delimiter="\t"))


def imagenet_lemmas(wnid: str) -> str:
    """The class's names, comma-separated (e.g. ``'tabby, tabby cat'``); KeyError for an unknown wnid."""
    return _table(LEMMAS)[wnid]


def imagenet_definition(wnid: str) -> str:
    """The WordNet definition (gloss) of the class; KeyError for an unknown wnid."""
    return _table(DEFINITIONS)[wnid]
