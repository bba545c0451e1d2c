"""The metrics every evaluation reports, computed in one place: top-k, per class, confusion, calibration.

Used by training (validation), ``vision.evaluate``, ``crossmodal.evaluate``, ``crossmodal.calibrate`` and
the benchmarks. Inputs are tensors: ``scores`` ``(N, C)`` (logits or probabilities), ``targets`` ``(N,)``
column indices, ``ranked`` ``(N, k)`` column indices best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch


def _check(n: int, targets: torch.Tensor) -> None:
    if targets.ndim != 1 or targets.numel() != n:
        raise ValueError(f"targets must be 1-D with one entry per row ({n}), got shape {tuple(targets.shape)}")
    if n == 0:
        raise ValueError("no samples to score")


def hits_at_k(ranked: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, whether the target is among the first ``k`` ranked columns (bool ``(N,)``)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _check(ranked.shape[0], targets)
    return (ranked[:, :k] == targets[:, None]).any(1)


def rank(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best columns per row (fewer when there are fewer columns), best first."""
    return scores.topk(min(k, scores.shape[1]), dim=1).indices


def topk_correct(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of rows whose target is in the top ``k`` scores, for each ``k``."""
    ranked = rank(scores, max(ks))
    return {k: int(hits_at_k(ranked, targets, k).sum()) for k in ks}


def topk_accuracy(scores: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose target is in the top ``k`` scores, for each ``k``."""
    return {k: count / targets.numel() for k, count in topk_correct(scores, targets, ks).items()}


def per_class_accuracy(targets: torch.Tensor, correct: torch.Tensor, num_classes: int) -> list[float | None]:
    """Per class index ``0..num_classes-1``: the fraction of its rows that are correct (``None`` without rows)."""
    _check(correct.numel(), targets)
    counts = torch.bincount(targets, minlength=num_classes).double()
    right = torch.bincount(targets, weights=correct.double(), minlength=num_classes)
    return [None if c == 0 else (r / c).item() for r, c in zip(right, counts)]


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts: row = true class, column = predicted class."""
    _check(predictions.numel(), targets)
    return torch.bincount(targets * num_classes + predictions, minlength=num_classes**2).view(num_classes, num_classes)


@dataclass(frozen=True)
class CalibrationBin:
    """One confidence bin of a reliability diagram."""

    lower: float
    upper: float
    count: int
    accuracy: float | None
    confidence: float | None


@dataclass(frozen=True)
class CalibrationReport:
    """Expected calibration error (weighted mean |accuracy - confidence| over equal-width bins) and its bins."""

    ece: float
    bins: tuple[CalibrationBin, ...]

    def to_dict(self) -> dict:
        return {"ece": self.ece, "bins": [asdict(b) for b in self.bins]}


def calibration(confidences: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> CalibrationReport:
    """ECE of top-1 ``confidences`` (in [0, 1]) against ``correct`` over ``bins`` equal-width bins.

    A confidence of exactly 1 falls in the last bin; bins are right-closed (``(lo, hi]``), the first
    one includes 0.
    """
    confidences, correct = confidences.double().flatten(), correct.double().flatten()
    if confidences.numel() != correct.numel() or confidences.numel() == 0:
        raise ValueError(f"need as many confidences ({confidences.numel()}) as correctness flags "
                         f"({correct.numel()}), at least one")
    if not torch.isfinite(confidences).all() or confidences.min() < 0 or confidences.max() > 1:
        raise ValueError("confidences must be finite probabilities in [0, 1]")
    index = (torch.ceil(confidences * bins).long() - 1).clamp(0, bins - 1)
    out, ece, n = [], 0.0, confidences.numel()
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        acc = correct[mask].mean().item() if count else None
        conf = confidences[mask].mean().item() if count else None
        if count:
            ece += count / n * abs(acc - conf)
        out.append(CalibrationBin(b / bins, (b + 1) / bins, count, acc, conf))
    return CalibrationReport(ece, tuple(out))


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` separating ``positive`` rows from the rest (Mann-Whitney U,
    ties counted half)."""
    scores, positive = scores.double().flatten(), positive.bool().flatten()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs positive and negative rows, got {n_pos} and {n_neg}")
    order = torch.argsort(scores)
    _, inverse, counts = torch.unique(scores[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average_rank = ends - (counts.double() - 1) / 2  # 1-based mean rank of each run of equal scores
    ranks = torch.empty_like(scores)
    ranks[order] = average_rank[inverse]
    u = ranks[positive].sum().item() - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)
