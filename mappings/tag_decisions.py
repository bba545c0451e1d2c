"""From an audio tagger's pooled label scores to a guide's class ids, gains and reason: one pure function.

Torch-free on purpose (stdlib and numpy only): a robot loop can load a :class:`TagDecisionTable` written by
``python -m mappings.tag_table`` and decide without the mapper's models, and ``CueMapper`` decides audio cues
with the same :func:`decide`, so both give the same guide by construction.

:func:`decide` on the tags ``(mid, score)``, best first (the first ``top_k`` count):

1. **generic** labels (AudioSet's roots and their children: Animal, Domestic animals, Vehicle, Music, ...)
   name a category, not a source: they are skipped;
2. **ancestor rule**: a label with a descendant among the tags at ``min_score`` or more is skipped - the
   specific label wins (Crow over Bird, Meow over Cat);
3. **no ImageNet counterpart**: the best label that maps to no class, when ``sure_score`` or more and more than
   ``1 / margin`` of the best mapped label's score (Speech 0.8 beside Dog 0.6), vetoes the guide; so does it
   when no mapped label reaches ``min_score`` but it does;
4. **weak**: the best mapped label scores below ``min_score``;
5. **contradictory**: another mapped label whose classes are disjoint from the best one's scores more than
   ``1 / margin`` of it (Roar 0.43 beside Cattle 0.32) - unless the two share a (non-generic) ancestor: then
   the source is one of that family and the guide holds both (Quack 0.90 and Goose 0.88, both Fowl);
6. otherwise the guide holds the classes of the best mapped label, of those family members, and of every
   mapped label at ``min_score`` or more that shares a class with it; a class's gain is the highest of its matches:
   ``lo + (hi - lo) * score * strength``, or a curated fixed gain.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xmcommon.files import atomic_write_text

from .guide import ABSTAIN_REASONS, CONTRADICTORY, NO_COUNTERPART, WEAK

FORMAT, VERSION = "crossmodal-tag-decisions", 1


def gain_of(gain_range: tuple[float, float], score: float, strength: float) -> float:
    """The monotone gain of a class: ``lo + (hi - lo) * score * strength``."""
    lo, hi = gain_range
    return lo + (hi - lo) * score * strength


@dataclass(frozen=True)
class TagRules:
    """The parameters of :func:`decide` (``CueMapper`` takes them from its ``MapperConfig``)."""

    top_k: int = 10
    min_score: float = 0.3
    sure_score: float = 0.5
    margin: float = 2.0
    gain_range: tuple[float, float] = (1.0, 4.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gain_range", tuple(float(g) for g in self.gain_range))
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        for name in ("min_score", "sure_score"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} {getattr(self, name)} must be in [0, 1]")
        if not self.margin >= 1:
            raise ValueError(f"margin {self.margin} must be >= 1")
        lo, hi = self.gain_range
        if len(self.gain_range) != 2 or not 0 < lo <= hi:
            raise ValueError(f"gain_range {self.gain_range} must satisfy 0 < lo <= hi")


@dataclass(frozen=True)
class LabelMatch:
    """Classes one label leads to: ``method`` override / wordnet / embedding, ``strength`` in [0, 1], an
    optional curated ``gain``; ``matched``, ``similarity`` and ``via`` say how (for explanations)."""

    classes: tuple[int, ...]
    strength: float
    gain: float | None = None
    method: str = ""
    matched: str = ""
    similarity: float = 1.0
    via: str = ""


@dataclass(frozen=True)
class TagLabel:
    """One tagger label: its AudioSet mid, display name, the mids of its ancestors that are not generic, whether
    it is generic itself, and its matches (none: the label has no ImageNet counterpart)."""

    mid: str
    name: str
    ancestors: tuple[str, ...] = ()
    generic: bool = False
    matches: tuple[LabelMatch, ...] = ()

    @property
    def classes(self) -> frozenset[int]:
        return frozenset(c for m in self.matches for c in m.classes)


@dataclass(frozen=True)
class TagDecision:
    """What :func:`decide` found: classes (sorted) and their gains, or none and the ``reason`` it abstained;
    ``used`` are the ``(mid, score)`` of the labels the classes come from, ``notes`` say why."""

    classes: tuple[int, ...]
    gains: tuple[tuple[int, float], ...]
    reason: str
    used: tuple[tuple[str, float], ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def confident(self) -> bool:
        return bool(self.classes)


def _abstain(reason: str, notes: list[str]) -> TagDecision:
    return TagDecision((), (), reason, (), tuple(notes))


def decide(labels: Mapping[str, TagLabel], rules: TagRules, tags: Iterable[tuple[str, float]]) -> TagDecision:
    """The decision for ``tags`` (``(mid, score)`` pairs) under ``rules``; see the module docstring."""
    tags = [(mid, float(score)) for mid, score in tags]
    for mid, score in tags:
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise ValueError(f"tag {mid!r}: score must be a finite number in [0, 1], got {score!r}")
    ranked: list[tuple[TagLabel, float]] = []
    notes: list[str] = []
    for mid, score in sorted(tags, key=lambda tag: -tag[1])[: rules.top_k]:
        if mid not in labels:
            notes.append(f"ignored {mid!r}: not a label of the table")
        elif labels[mid].generic:
            notes.append(f"skipped {labels[mid].name!r}: a generic AudioSet category")
        else:
            ranked.append((labels[mid], score))
    strong = {label.mid for label, score in ranked if score >= rules.min_score}
    candidates = []
    for label, score in ranked:
        specific = next((other for other, s in ranked if other.mid in strong and label.mid in other.ancestors), None)
        if specific is not None:
            notes.append(f"skipped {label.name!r}: more specific {specific.name!r} present")
        else:
            candidates.append((label, score))
    mapped = [(label, score) for label, score in candidates if label.classes]
    unmapped = [(label, score) for label, score in candidates if not label.classes]
    best, best_score = mapped[0] if mapped else (None, 0.0)
    if unmapped:
        other, other_score = unmapped[0]
        vetoes = other_score >= rules.sure_score and other_score * rules.margin > best_score
        if vetoes or (best_score < rules.min_score <= other_score):
            notes.append(f"{other.name!r} ({other_score:.2f}) has no ImageNet counterpart and outweighs "
                         + (f"{best.name!r} ({best_score:.2f})" if best else "every other label"))
            return _abstain(NO_COUNTERPART, notes)
    if best is None or best_score < rules.min_score:
        notes.append(f"weak: no label that maps to a class scores {rules.min_score} or more"
                     + (f" (best {best.name!r} {best_score:.2f})" if best else ""))
        return _abstain(WEAK, notes)
    family = {best.mid}
    for other, other_score in mapped[1:]:
        if other.classes.isdisjoint(best.classes) and other_score * rules.margin > best_score:
            if set(other.ancestors).isdisjoint(best.ancestors):
                notes.append(f"contradictory: {best.name!r} ({best_score:.2f}) and {other.name!r} "
                             f"({other_score:.2f}) map to disjoint classes, within a factor {rules.margin}")
                return _abstain(CONTRADICTORY, notes)
            family.add(other.mid)
            notes.append(f"kept {other.name!r} ({other_score:.2f}) beside {best.name!r}: the same AudioSet family")
    used = [(label, score) for label, score in mapped if label.mid in family
            or (score >= rules.min_score and not label.classes.isdisjoint(best.classes))]
    gains: dict[int, float] = {}
    for label, score in used:
        for match in label.matches:
            gain = match.gain if match.gain is not None else gain_of(rules.gain_range, score, match.strength)
            for c in match.classes:
                gains[c] = max(gains.get(c, 0.0), gain)
    return TagDecision(tuple(sorted(gains)), tuple(sorted(gains.items())), "",
                       tuple((label.mid, score) for label, score in used), tuple(notes))


class TagDecisionTable:
    """Every label of one tagger (in its order) with what it maps to, the rules, and the class list (wnids)."""

    def __init__(self, labels: Sequence[TagLabel], rules: TagRules = TagRules(), *, wnids: Sequence[str] = (),
                 tagger: str = ""):
        self.labels = tuple(labels)
        self.rules = rules
        self.wnids = tuple(wnids)
        self.tagger = tagger
        self.by_mid: dict[str, TagLabel] = {label.mid: label for label in self.labels}
        if len(self.by_mid) != len(self.labels):
            raise ValueError("a tag decision table needs each label mid once")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TagDecisionTable) and self.to_dict() == other.to_dict()

    def decide(self, tags: Iterable[tuple[str, float]]) -> TagDecision:
        """:func:`decide` on ``(mid, score)`` tags."""
        return decide(self.by_mid, self.rules, tags)

    def decide_scores(self, scores: Sequence[float] | np.ndarray) -> TagDecision:
        """:func:`decide` on a pooled score vector in the table's label order (its ``top_k`` best, ties: lower
        index first, as ``audio.AudioTagger`` ranks them)."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(self.labels),):
            raise ValueError(f"expected {len(self.labels)} scores (one per label), got shape {scores.shape}")
        order = np.argsort(-scores, kind="stable")[: self.rules.top_k]
        return self.decide((self.labels[i].mid, float(scores[i])) for i in order)

    def to_dict(self) -> dict:
        labels = [{"mid": label.mid, "name": label.name, "ancestors": list(label.ancestors),
                   "generic": label.generic,
                   "matches": [{**asdict(m), "classes": list(m.classes)} for m in label.matches]}
                  for label in self.labels]
        rules = {**asdict(self.rules), "gain_range": list(self.rules.gain_range)}
        return {"format": FORMAT, "version": VERSION, "tagger": self.tagger, "rules": rules,
                "reasons": list(ABSTAIN_REASONS), "wnids": list(self.wnids), "labels": labels}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TagDecisionTable:
        """The table of :meth:`to_json`; ValueError naming what is wrong."""
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise ValueError(f"expected format {FORMAT!r} version {VERSION}, got {data.get('format')!r} "
                                 f"version {data.get('version')!r}")
            labels = [TagLabel(entry["mid"], entry["name"], tuple(entry["ancestors"]), bool(entry["generic"]),
                               tuple(LabelMatch(**{**m, "classes": tuple(m["classes"])}) for m in entry["matches"]))
                      for entry in data["labels"]]
            return cls(labels, TagRules(**data["rules"]), wnids=data["wnids"], tagger=data["tagger"])
        except (AttributeError, KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"not a tag decision table: {type(error).__name__}: {error}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` atomically."""
        return atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> TagDecisionTable:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tag decision table {path} not found")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
