"""Evaluate a CueMapper on a YAML table of cues with expected ImageNet classes (or abstain)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from xmcommon.ids import parse_ids

from .mapper import cue_labels
from .wordnet import WordNetHierarchy


@dataclass(frozen=True)
class EvalCase:
    """A cue (text or (label, score) pairs) and the expected classes; empty = must abstain."""

    cue: str | tuple[tuple[str, float], ...]
    expected: frozenset[int]

    @property
    def abstain(self) -> bool:
        return not self.expected


@dataclass(frozen=True)
class EvalReport:
    """Macro precision over cues with a prediction, macro recall over positive cues, abstain accuracy."""

    precision: float
    recall: float
    abstain_accuracy: float
    n_positive: int
    n_abstain: int
    rows: tuple[dict, ...]

    def to_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "abstain_accuracy": self.abstain_accuracy,
                "n_positive": self.n_positive, "n_abstain": self.n_abstain, "rows": list(self.rows)}


def load_eval_cases(path: str | Path, hierarchy: WordNetHierarchy) -> tuple[EvalCase, ...]:
    """Read ``- cue: ...  expect: [class | 'a-b' | synset, ...]`` entries (``[]`` = abstain)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation table {path} not found")
    cases = []
    for i, entry in enumerate(yaml.safe_load(path.read_text(encoding="utf-8")) or []):
        if not isinstance(entry, dict) or set(entry) != {"cue", "expect"}:
            raise ValueError(f"{path} entry {i}: expected exactly the keys 'cue' and 'expect', got {entry!r}")
        cue = entry["cue"] if isinstance(entry["cue"], str) else cue_labels(entry["cue"])
        cases.append(EvalCase(cue, expand_classes(entry["expect"] or [], hierarchy, f"{path} entry {i} ({cue})")))
    return tuple(cases)


def expand_classes(items: list, hierarchy: WordNetHierarchy, what: str) -> frozenset[int]:
    """Class ids from ImageNet indices, ``"a-b"`` ranges and WordNet synsets (all classes below them)."""
    expected: set[int] = set()
    for item in items:
        if isinstance(item, str) and not item[:1].isdigit():
            expected.update(hierarchy.classes_under(item))
        else:
            expected.update(parse_ids([item], what=what, limit=len(hierarchy.classes)))
    return frozenset(expected)


def evaluate(mapper, cases: tuple[EvalCase, ...]) -> EvalReport:
    """Map every cue and score the predicted class sets."""
    precisions, recalls, abstain_ok, rows = [], [], [], []
    for case in cases:
        guide = mapper.map(case.cue if isinstance(case.cue, str) else list(case.cue))
        predicted = set(guide.classes)
        row = {"cue": case.cue if isinstance(case.cue, str) else [list(p) for p in case.cue],
               "expected": len(case.expected), "predicted": len(predicted), "confident": guide.confident}
        if case.abstain:
            ok = not guide.confident and not predicted
            abstain_ok.append(ok)
            row["ok"] = ok
        else:
            hit = len(predicted & case.expected)
            recalls.append(hit / len(case.expected))
            if predicted:
                precisions.append(hit / len(predicted))
            row.update(precision=hit / len(predicted) if predicted else None, recall=hit / len(case.expected))
        rows.append(row)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return EvalReport(mean(precisions), mean(recalls), mean(abstain_ok), len(recalls), len(abstain_ok), tuple(rows))
