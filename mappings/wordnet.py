"""The WordNet 3.0 hypernym graph above the ImageNet classes (package data, see NOTICE inside)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import cached_property, lru_cache
from importlib import resources

from .classes import ImageNetClass, imagenet_classes

TABLE = "wordnet_imagenet.json"


@lru_cache(maxsize=1)
def _load_table() -> dict:
    text = resources.files(__package__).joinpath("data", TABLE).read_text(encoding="utf-8")
    return json.loads(text)


class WordNetHierarchy:
    """Hypernym graph of a model's ImageNet classes: ancestors, descendants, LCA, parent groups.

    Synsets are named nltk-style (``"domestic_cat.n.01"``); every method that takes a synset also
    accepts its wnid (``"n02121808"``) or a lemma (``"domestic_cat"``, most common sense first).
    Classes are indices into ``self.classes``.
    """

    def __init__(self, classes: Sequence[ImageNetClass]):
        table = _load_table()
        self._synsets: dict[str, dict] = table["synsets"]
        self._lemma_senses: dict[str, list[list]] = table["lemma_senses"]
        self.notice: str = table["notice"]
        self.classes = tuple(classes)
        self._class_of_wnid = {c.wnid: c.index for c in self.classes}
        self._wnid_of_name = {s["name"]: w for w, s in self._synsets.items()}

    # --- naming -----------------------------------------------------------------------------
    def wnid(self, synset: str) -> str:
        """Resolve a synset name, wnid or lemma to its wnid; ValueError when unknown."""
        if synset in self._synsets:
            return synset
        if synset in self._wnid_of_name:
            return self._wnid_of_name[synset]
        senses = self._lemma_senses.get(_lemma_key(synset))
        if senses:
            return senses[0][0]
        raise ValueError(
            f"unknown synset {synset!r}: expected a synset name like 'domestic_cat.n.01', a wnid like "
            "'n02121808' or a lemma of a synset above the ImageNet classes"
        )

    def name(self, synset: str) -> str:
        """nltk-style name of a synset, e.g. ``"dog.n.01"``."""
        return self._synsets[self.wnid(synset)]["name"]

    def lemmas(self, synset: str) -> tuple[str, ...]:
        return tuple(self._synsets[self.wnid(synset)]["lemmas"])

    def gloss(self, synset: str) -> str:
        wnid = self.wnid(synset)
        if wnid in self._class_of_wnid:
            return self.classes[self._class_of_wnid[wnid]].gloss
        return self._synsets[wnid]["gloss"]

    def senses(self, lemma: str) -> tuple[tuple[str, int], ...]:
        """(synset name, WordNet sense number) of a lemma's synsets in the table, commonest first."""
        return tuple((self._synsets[w]["name"], rank) for w, rank in self._lemma_senses.get(_lemma_key(lemma), []))

    def main_sense(self, lemma: str) -> str | None:
        """The synset of a lemma's most common WordNet sense when it is in the table, else None.

        ``"dog"`` -> ``"dog.n.01"``; ``"wind"`` -> None (its first sense is moving air, not the
        wind instrument that the table does hold).
        """
        senses = self.senses(lemma)
        return senses[0][0] if senses and senses[0][1] == 1 else None

    def class_wnid(self, index: int) -> str:
        if not 0 <= index < len(self.classes):
            raise ValueError(f"class index {index} out of range: expected 0..{len(self.classes) - 1}")
        return self.classes[index].wnid

    # --- graph ------------------------------------------------------------------------------
    def parents(self, synset: str) -> tuple[str, ...]:
        """Direct hypernyms (names), in WordNet order; the first is the primary parent."""
        return tuple(self._synsets[p]["name"] for p in self._synsets[self.wnid(synset)]["parents"])

    def ancestors(self, item: str | int) -> tuple[str, ...]:
        """All hypernyms of a synset or class index (names), nearest first, each once."""
        start = self.class_wnid(item) if isinstance(item, int) else self.wnid(item)
        out: list[str] = []
        frontier = [start]
        while frontier:
            nxt = []
            for wnid in frontier:
                for parent in self._synsets[wnid]["parents"]:
                    if parent not in out:
                        out.append(parent)
                        nxt.append(parent)
            frontier = nxt
        return tuple(self._synsets[w]["name"] for w in out)

    def primary_path(self, item: str | int) -> tuple[str, ...]:
        """Root-to-item chain following the first parent at each step (names)."""
        wnid = self.class_wnid(item) if isinstance(item, int) else self.wnid(item)
        path = [wnid]
        while self._synsets[path[-1]]["parents"]:
            path.append(self._synsets[path[-1]]["parents"][0])
        return tuple(self._synsets[w]["name"] for w in reversed(path))

    @cached_property
    def _classes_under(self) -> dict[str, frozenset[int]]:
        under: dict[str, set[int]] = {w: set() for w in self._synsets}
        for cls in self.classes:
            under[cls.wnid].add(cls.index)
            for name in self.ancestors(cls.index):
                under[self._wnid_of_name[name]].add(cls.index)
        return {w: frozenset(v) for w, v in under.items()}

    def classes_under(self, synset: str) -> tuple[int, ...]:
        """Sorted class indices at or below a synset, e.g. ``domestic_cat`` -> 281..285."""
        return tuple(sorted(self._classes_under[self.wnid(synset)]))

    def descendants(self, synset: str) -> tuple[int, ...]:
        """Classes strictly below a synset (a class synset has none among the 1000 but itself)."""
        wnid = self.wnid(synset)
        return tuple(i for i in self.classes_under(wnid) if self.classes[i].wnid != wnid)

    def lowest_common_ancestor(self, items: Iterable[str | int]) -> str:
        """Deepest synset (by primary-path depth) that is an ancestor-or-self of every item."""
        items = list(items)
        if not items:
            raise ValueError("lowest_common_ancestor needs at least one synset or class index")
        common: set[str] | None = None
        for item in items:
            own = self.classes[item].wnid if isinstance(item, int) else self.wnid(item)
            names = {self._synsets[own]["name"], *self.ancestors(own)}
            common = names if common is None else common & names
        return max(sorted(common), key=lambda n: len(self.primary_path(n)))

    def parent_groups(self, choose: dict[int, str] | None = None) -> dict[str, tuple[int, ...]]:
        """One-level grouping: primary (first) WordNet parent -> sorted class indices.

        ``choose`` maps a class index to one of its direct parents to use instead of the first
        (38 ImageNet classes have several); any other parent raises ValueError.
        """
        groups: dict[str, list[int]] = {}
        for cls in self.classes:
            parents = self.parents(cls.wnid)
            parent = parents[0]
            if choose and cls.index in choose:
                parent = self.name(choose[cls.index])
                if parent not in parents:
                    raise ValueError(f"class {cls.index} ({cls.name}): {parent!r} is not a direct parent {parents}")
            groups.setdefault(parent, []).append(cls.index)
        return {k: tuple(v) for k, v in groups.items()}


def _lemma_key(text: str) -> str:
    return "_".join(text.strip().lower().split())


def imagenet_hierarchy(wnids: Sequence[str] | None = None) -> WordNetHierarchy:
    """The WordNet hierarchy of ImageNet-1k, or of a model's own class list (wnids)."""
    return _hierarchy_1k() if wnids is None else WordNetHierarchy(imagenet_classes(wnids))


@lru_cache(maxsize=1)
def _hierarchy_1k() -> WordNetHierarchy:
    return WordNetHierarchy(imagenet_classes())
