"""The one cue interface shared by sound and text: labels with scores, and where they came from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CUE_SOURCES = ("audio", "text")


@dataclass(frozen=True)
class Cue:
    """Semantic labels with scores in [0, 1], best first, and the modality they came from ("audio" or "text").

    `mids` optionally gives each label's AudioSet ontology id (None where a label has none), as audio taggers
    do. They are metadata derived from the labels: equality compares labels and source only.
    """

    labels: tuple[tuple[str, float], ...]
    source: str
    mids: tuple[str | None, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.source not in CUE_SOURCES:
            raise ValueError(f"Cue source must be one of {CUE_SOURCES}, got {self.source!r}")
        if not self.labels:
            raise ValueError("Cue needs at least one (label, score) pair, got none")
        labels = tuple((label, float(score)) for label, score in self.labels)
        for label, score in labels:
            if not isinstance(label, str) or not label.strip():
                raise ValueError(f"Cue labels must be non-empty strings, got {label!r}")
            if not (math.isfinite(score) and 0.0 <= score <= 1.0):
                raise ValueError(f"Cue score for {label!r} must be a finite number in [0, 1], got {score!r}")
        object.__setattr__(self, "labels", labels)
        if self.mids is not None:
            mids = tuple(self.mids)
            if len(mids) != len(labels) or not all(mid is None or (isinstance(mid, str) and mid) for mid in mids):
                raise ValueError(f"Cue mids must be one non-empty string or None per label ({len(labels)}), got {mids!r}")
            object.__setattr__(self, "mids", mids)

    def to_dict(self) -> dict:
        labels = [{"label": label, "score": score} for label, score in self.labels]
        if self.mids is not None:
            labels = [{**entry, "mid": mid} for entry, mid in zip(labels, self.mids)]
        return {"source": self.source, "labels": labels}


def TextCue(text: str) -> Cue:
    """A cue from a short text such as "find the cat": one label, the stripped text, with score 1."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"TextCue needs a non-empty text, got {text!r}")
    return Cue(labels=((text.strip(), 1.0),), source="text")
