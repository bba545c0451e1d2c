"""Guides: immutable values saying which classes to look for and how strongly to attend to them."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

GainKey = Union[int, str]


@dataclass(frozen=True)
class Guide:
    """Classes to look for (label ids, sorted), attention gains and where they came from.

    ``gains`` holds ``(key, gain)`` pairs: keys are class ids or tree-node names. A guide with
    ``confident=False`` makes every guided mode fall back to the unguided model. Guides are
    hashable values: pass them to :meth:`GuidedClassifier.predict` from any thread.
    """

    classes: tuple[int, ...]
    gains: tuple[tuple[GainKey, float], ...] = ()
    confident: bool = True
    explanation: str = ""
    cue: tuple[tuple[str, float], ...] = ()
    source: str = "manual"

    def __post_init__(self) -> None:
        classes = tuple(sorted({_class_id(c) for c in self.classes}))
        if self.confident and not classes:
            raise ValueError("a confident guide needs at least one class")
        pairs = {_gain_key(k): v for k, v in (self.gains.items() if isinstance(self.gains, Mapping) else self.gains)}
        for key, value in pairs.items():
            if not math.isfinite(float(value)) or float(value) < 0:
                raise ValueError(f"gain for {key!r} must be a finite number >= 0, got {value!r}")
        ordered = sorted(((k, float(v)) for k, v in pairs.items()), key=lambda kv: (isinstance(kv[0], str), kv[0]))
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "gains", tuple(ordered))
        object.__setattr__(self, "cue", tuple((str(label), float(score)) for label, score in self.cue))

    @classmethod
    def for_classes(cls, classes: Iterable[int], gain: float = 1.0, explanation: str = "") -> Guide:
        """A hand-made guide: look for ``classes``, each with the same ``gain`` (1.0 = no attention)."""
        classes = tuple(classes)
        return cls(classes, tuple((c, gain) for c in classes), True, explanation or f"manual: {len(classes)} classes")

    @classmethod
    def from_mapping(cls, mapped: Any, cue: Any = None, extra_gains: Mapping[GainKey, float] | None = None) -> Guide:
        """Wrap the result of ``mappings.CueMapper.map`` (and the cue it came from), plus ``extra_gains``."""
        labels = tuple(getattr(cue, "labels", ())) if cue is not None else ()
        source = getattr(cue, "source", "text" if isinstance(cue, str) else "manual")
        if isinstance(cue, str):
            labels = ((cue, 1.0),)
        gains = {**dict(extra_gains or {}), **mapped.gains}
        return cls(tuple(mapped.classes), tuple(gains.items()), bool(mapped.confident), mapped.explain(), labels, source)

    def gain_map(self) -> dict[GainKey, float]:
        """The gains as a new dict."""
        return dict(self.gains)

    def scaled(self, factor: float) -> Guide:
        """The same guide with every gain's deviation from 1 multiplied by ``factor`` (0 = no attention)."""
        if not math.isfinite(factor) or factor < 0:
            raise ValueError(f"factor must be a finite number >= 0, got {factor}")
        gains = tuple((k, max(0.0, 1.0 + factor * (v - 1.0))) for k, v in self.gains)
        return Guide(self.classes, gains, self.confident, self.explanation, self.cue, self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "gains": {str(k): v for k, v in self.gains},
                "confident": self.confident, "explanation": self.explanation,
                "cue": [{"label": label, "score": score} for label, score in self.cue], "source": self.source}


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
