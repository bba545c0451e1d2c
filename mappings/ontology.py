"""AudioSet ontology awareness: which objects make a sound (package data, CC BY-SA 4.0)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

TABLE = "audioset_sources.json"


@lru_cache(maxsize=1)
def _load_table() -> dict:
    return json.loads(resources.files(__package__).joinpath("data", TABLE).read_text(encoding="utf-8"))


def split_synonyms(name: str) -> tuple[str, ...]:
    """``"Vehicle horn, car horn, honking"`` -> its synonyms; text in parentheses is dropped."""
    out = []
    depth, plain = 0, []
    for ch in name:
        depth += ch == "("
        if depth == 0:
            plain.append(ch)
        depth -= ch == ")" and depth > 0
    for part in "".join(plain).split(","):
        part = " ".join(part.split())
        if part and part.lower() != "etc.":
            out.append(part)
    return tuple(out)


class AudioSetOntology:
    """The 632 AudioSet nodes: ancestor levels (roots excluded) and the WordNet object they name."""

    def __init__(self) -> None:
        table = _load_table()
        self.notice: str = table["notice"]
        self.roots: tuple[str, ...] = tuple(table["roots"])
        self._labels: dict[str, dict] = table["labels"]
        self.names: tuple[str, ...] = tuple(self._labels)
        self._by_lower = {name.lower(): name for name in self._labels}
        self._by_mid = {entry["id"]: name for name, entry in self._labels.items()}

    def lookup(self, label: str) -> str | None:
        """The canonical display name of a label (case-insensitive), or None when not in AudioSet."""
        return self._by_lower.get(label.strip().lower())

    def name_of(self, mid: str) -> str | None:
        """The display name of an AudioSet mid (``"/m/01yrx"`` -> ``"Cat"``), or None when not in the ontology."""
        return self._by_mid.get(mid)

    def mid_of(self, name: str) -> str:
        """The AudioSet mid of a canonical display name."""
        return self._labels[name]["id"]

    def is_generic(self, name: str) -> bool:
        """A root or a child of one (Animal, Domestic animals, Vehicle, Music): a category, not a sound's source."""
        return self.is_root(name) or not self._labels[name]["ancestors"]

    def is_root(self, name: str) -> bool:
        return name in self.roots

    def parents(self, name: str) -> tuple[str, ...]:
        levels = self._labels[name]["ancestors"]
        return tuple(levels[0]) if levels else ()

    def object_of(self, name: str) -> str | None:
        """WordNet synset when the label names an animal or artifact itself (Helicopter), else None."""
        return self._labels[name]["object"]

    def ancestors(self, name: str) -> frozenset[str]:
        """All ancestors without the roots."""
        return frozenset(a for level in self._labels[name]["ancestors"] for a in level)


@lru_cache(maxsize=1)
def audioset_ontology() -> AudioSetOntology:
    return AudioSetOntology()
