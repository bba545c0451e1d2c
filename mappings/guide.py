"""Guides: immutable values saying which classes to look for, how strongly to attend to them, and why.

The one guide type of the project: :class:`mappings.CueMapper` makes guides from cues, and
``crossmodal`` (which re-exports it) runs them. Guides are hashable values that any thread may share.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

GainKey = Union[int, str]  # a class id, or the name of a node of a model's class tree
GUIDE_SOURCES = ("text", "audio", "manual")
EXPLAINED_LINES = 12  # explain() shows at most this many distinct matches (and notes)
SILENT, WEAK, CONTRADICTORY, NO_COUNTERPART = "silent", "weak", "contradictory", "no ImageNet counterpart"
ABSTAIN_REASONS = (SILENT, WEAK, CONTRADICTORY, NO_COUNTERPART)  # why a guide is not confident
_REASON_TEXT = {"": "no cue label maps to an ImageNet class", SILENT: "nothing was heard (digital silence)",
                WEAK: "the evidence is weak", CONTRADICTORY: "the cue labels contradict each other",
                NO_COUNTERPART: "the cue has no ImageNet counterpart"}


@dataclass(frozen=True)
class Match:
    """How one cue label led to classes: ``method`` is override / wordnet / embedding."""

    label: str
    score: float
    method: str
    matched: str
    similarity: float
    classes: tuple[int, ...]
    via: str = ""

    def to_dict(self) -> dict:
        return {"label": self.label, "score": self.score, "method": self.method, "matched": self.matched,
                "similarity": self.similarity, "classes": list(self.classes), "via": self.via}


@dataclass(frozen=True)
class Guide:
    """Classes to look for (label ids, sorted), attention gains, and where they came from.

    ``gains`` holds ``(key, gain)`` pairs, keys being class ids or tree-node names (class ids first,
    then names, each sorted). A guide with ``confident=False`` has no classes and makes every guided
    mode fall back to the unguided model. ``cue`` holds the cue's ``(label, score)`` pairs and
    ``source`` its modality. ``class_names`` (for :meth:`explain` only) takes no part in equality. ``reason``
    says why a guide is not confident (one of :data:`ABSTAIN_REASONS`, or "" when not told); confident: "".
    """

    classes: tuple[int, ...]
    gains: tuple[tuple[GainKey, float], ...] = ()
    confident: bool = True
    matches: tuple[Match, ...] = ()
    notes: tuple[str, ...] = ()
    cue: tuple[tuple[str, float], ...] = ()
    source: str = "manual"
    class_names: Mapping[int, str] = field(default_factory=dict, repr=False, compare=False, hash=False)
    reason: str = ""

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        classes = tuple(sorted({_class_id(c) for c in self.classes}))
        if self.confident and not classes:
            raise ValueError("a confident guide needs at least one class")
        if not self.confident and classes:
            raise ValueError(f"a guide that is not confident has no classes, got {len(classes)}")
        if self.source not in GUIDE_SOURCES:
            raise ValueError(f"guide source must be one of {GUIDE_SOURCES}, got {self.source!r}")
        if self.reason not in ("", *ABSTAIN_REASONS) or (self.confident and self.reason):
            raise ValueError(f"guide reason must be one of {ABSTAIN_REASONS} for a guide that is not confident "
                             f"and '' otherwise, got {self.reason!r} (confident={self.confident})")
        pairs = {_gain_key(k): v for k, v in (self.gains.items() if isinstance(self.gains, Mapping) else self.gains)}
        for key, value in pairs.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"gain for {key!r} must be a finite number >= 0, got {value!r}")
        set_("classes", classes)
        set_("gains", tuple(sorted(((k, float(v)) for k, v in pairs.items()),
                                   key=lambda kv: (isinstance(kv[0], str), kv[0]))))
        set_("matches", tuple(self.matches))
        set_("notes", tuple(str(n) for n in self.notes))
        set_("cue", tuple((str(label), float(score)) for label, score in self.cue))
        set_("class_names", dict(self.class_names))

    @classmethod
    def for_classes(cls, classes: Iterable[int], gain: float = 1.0, note: str = "") -> Guide:
        """A hand-made guide: look for ``classes``, each with the same ``gain`` (1.0 = no attention)."""
        classes = tuple(classes)
        return cls(classes, tuple((c, gain) for c in classes), True,
                   notes=(note or f"manual: {len(set(classes))} classes",))

    @classmethod
    def abstain(cls, notes: Iterable[str] = (), cue: Iterable[tuple[str, float]] = (), source: str = "manual",
                reason: str = "") -> Guide:
        """A guide that is not confident: guided modes run unguided; ``reason`` and ``notes`` say why."""
        return cls((), (), False, notes=tuple(notes), cue=tuple(cue), source=source, reason=reason)

    def gain_map(self) -> dict[GainKey, float]:
        """The gains as a new dict."""
        return dict(self.gains)

    def class_gains(self) -> dict[int, float]:
        """The gains of classes (not of tree nodes)."""
        return {k: v for k, v in self.gains if isinstance(k, int)}

    def with_gains(self, extra: Mapping[GainKey, float]) -> Guide:
        """The same guide with ``extra`` gains added (a gain already present is kept)."""
        if not extra:
            return self
        gains = {**dict(extra), **dict(self.gains)}
        return Guide(self.classes, tuple(gains.items()), self.confident, self.matches, self.notes, self.cue,
                     self.source, self.class_names, self.reason)

    def explain(self) -> str:
        """Human-readable account: which cue label matched which classes, how, how strongly."""
        if not self.confident:
            head = f"unguided (confident=False): {_REASON_TEXT[self.reason]}"
        else:
            head = f"guided: {len(self.classes)} class{'es' if len(self.classes) != 1 else ''}"
        matches = []
        for m in self.matches:
            names = ", ".join(f"{c} {self.class_names.get(c, '')}".strip() for c in m.classes[:6])
            names = names or "no ImageNet class (curated)"
            more = f" (+{len(m.classes) - 6} more)" if len(m.classes) > 6 else ""
            via = f" via {m.via}" if m.via else ""
            sim = f" (cosine {m.similarity:.2f})" if m.method == "embedding" else ""
            matches.append(f"  {shorten(m.label)!r} (score {m.score:.2f}){via} -> {m.method} {m.matched!r}{sim} "
                           f"-> {names}{more}")
        lines = [head, *_capped(matches, "matches"), *_capped([f"  {shorten(n, 200)}" for n in self.notes], "notes")]
        nodes = {k: v for k, v in self.gains if isinstance(k, str)}
        if nodes:
            shown = [f"{k} {v:.2f}" for k, v in sorted(nodes.items())]
            more = f" (+{len(shown) - 8} more)" if len(shown) > 8 else ""
            lines.append("  node gains: " + ", ".join(shown[:8]) + more)
        class_gains = self.class_gains()
        if class_gains:
            values = sorted({round(v, 2) for v in class_gains.values()})
            lines.append(f"  class gains: {values[0]:.2f}..{values[-1]:.2f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "gains": {str(k): v for k, v in self.gains},
                "confident": self.confident, "matches": [m.to_dict() for m in self.matches],
                "notes": list(self.notes), "cue": [{"label": label, "score": score} for label, score in self.cue],
                "source": self.source, "reason": self.reason, "explanation": self.explain()}


def _capped(lines: list[str], what: str, limit: int = EXPLAINED_LINES) -> list[str]:
    """``lines`` without repeats (a long cue repeats its phrases), at most ``limit`` of them and a count of the rest."""
    unique = list(dict.fromkeys(lines))
    rest = len(unique) - limit
    return unique[:limit] + ([f"  (+{rest} more {what})"] if rest > 0 else [])


def shorten(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (an explanation stays short for a very long cue)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _gain_key(key: Any) -> GainKey:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or not isinstance(key, numbers.Integral):
        raise ValueError(f"gain key {key!r} must be a class id (int) or a tree-node name (str)")
    return int(key)


def _class_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"guide classes must be integer class ids, got {value!r}")
    return int(value)
