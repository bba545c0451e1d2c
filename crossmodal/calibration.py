"""Fitting a model's calibration on validation photos: the library behind ``python -m crossmodal.calibrate``.

Three settings, fitted in order and stored as the typed ``config.calibration`` (:func:`calibrated_config`):

1. **Level gains** (the paper tuned one gain by hand): a coordinate search over a grid, level by level,
   for the gain of the cued nodes that maximises guided top-1 (``gain_mode``, default ``attend``).
2. **Cue agreement**: a logistic map from a cue's evidence (the highest plain logit among its classes) to
   the probability that the image shows one of them, fitted by maximum likelihood on right cues (target:
   the guide holds the true class) and misleading ones (other classes' cues, target 0), weighted so that
   misleading cues make up ``wrong_cue_prior`` of the data (the rate expected in use; default 10 %).
3. **Temperatures**, one per mode: the temperature that makes the top-1 confidence most honest (least
   binary cross-entropy against top-1 correctness) on the right cues.

Trunk features are computed once per image.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from mappings import Guide
from vision import SeqParConfig
from vision.eval.metrics import auroc, calibration, hits_at_k

from .classifier import GuidedClassifier
from .evaluation import CALIBRATION_BINS, EvalItem, guide_for_cue
from .result import MODES
from .scoring import Scorer, evidence

DEFAULT_GRID = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)
DEFAULT_WRONG_CUE_PRIOR = 0.1
TEMPERATURES = tuple(math.exp(x / 20) for x in range(-40, 61))  # 0.14 .. 20, about 5 % apart


@dataclass(frozen=True)
class _Sample:
    """One validation image with its cue: trunk features, guide and true class."""

    features: torch.Tensor
    guide: Guide | None
    label: int


def calibrate(clf: GuidedClassifier, items: Sequence[EvalItem], *, wrong_items: Sequence[EvalItem] = (),
              gain_mode: str = "attend", grid: Sequence[float] = DEFAULT_GRID, modes: Sequence[str] = MODES,
              wrong_cue_prior: float = DEFAULT_WRONG_CUE_PRIOR, progress: bool = True) -> dict[str, Any]:
    """Fit level gains, the cue agreement (needs ``wrong_items``: the same kind of images with misleading
    cues) and a temperature per mode; returns the settings and the figures before and after."""
    if not 0 < wrong_cue_prior < 1:
        raise ValueError(f"wrong_cue_prior must be a rate in (0, 1), got {wrong_cue_prior}")
    if gain_mode not in ("attend", "cutout+attend"):
        raise ValueError(f"gain calibration needs an attention mode ('attend' or 'cutout+attend'), got {gain_mode!r}")
    if not grid or any(not 0 <= g < float("inf") for g in grid):
        raise ValueError(f"grid must be non-empty finite gains >= 0, got {list(grid)}")
    right = _samples(clf, items, progress, "right cues")
    wrong = _samples(clf, wrong_items, progress, "misleading cues")
    if not any(s.guide is not None and s.guide.confident for s in right):
        raise ValueError("no image has a confident guide: nothing to calibrate")
    gains = _fit_level_gains(clf, right, gain_mode, grid)
    clf.level_gains = tuple(gains["level_gains"])
    agreement = _fit_agreement(clf, right, wrong, wrong_cue_prior) if wrong else None
    scorer = Scorer({}, *(agreement["scale"], agreement["offset"]) if agreement else (1.0, 0.0))
    temperatures: dict[str, float] = {}
    figures = {}
    for mode in sorted(modes, key=lambda m: m != "unguided"):  # unguided first: guided modes fall back to it
        outputs = [clf.logits(s.features, s.guide, mode) for s in right]
        ran = [(raw, s.label) for raw, s in zip(outputs, right) if raw.mode == mode]
        before = dataclasses.replace(scorer, temperatures=dict(temperatures))
        temperatures[mode] = _fit_temperature([r for r, _ in ran], [label for _, label in ran], before, mode)
        figures[mode] = {"ece_before": _ece(outputs, right, Scorer({})),
                         "ece_after": _ece(outputs, right, dataclasses.replace(scorer, temperatures=temperatures))}
    return {**gains, "agreement": agreement, "temperatures": temperatures, "figures": figures,
            "images": len(right), "misleading_cues": len(wrong)}


def calibrated_config(config: SeqParConfig, found: Mapping[str, Any], record: Mapping[str, Any]) -> SeqParConfig:
    """``config`` with the fitted settings of :func:`calibrate` as its ``calibration``, and ``record`` (how they
    were found) in its metadata."""
    agreement = found.get("agreement")
    calibration = dataclasses.replace(
        config.calibration, level_gains=tuple(found["level_gains"]), temperatures=dict(found["temperatures"]),
        agreement=(agreement["scale"], agreement["offset"]) if agreement else config.calibration.agreement)
    return config.replace(calibration=calibration, metadata={**config.metadata, "calibration_run": dict(record)})


def _samples(clf: GuidedClassifier, items: Sequence[EvalItem], progress: bool, what: str) -> list[_Sample]:
    guides: dict[str, Guide] = {}
    out = []
    for item in tqdm(items, desc=f"calibrate: {what}", unit="img", disable=not progress):
        if item.cue is not None and item.cue not in guides:
            guides[item.cue] = guide_for_cue(clf, item.cue)
        features = clf.trunk_features(clf.preprocessor([item.image.path]))
        out.append(_Sample(features, guides.get(item.cue) if item.cue else None, item.image.class_id))
    return out


def _fit_level_gains(clf: GuidedClassifier, samples: list[_Sample], mode: str, grid: Sequence[float]) -> dict:
    labels = torch.tensor([s.label for s in samples])

    def top1(levels: list[float | None]) -> float:
        predicted = torch.tensor([[clf.predict_features(s.features, s.guide, mode, top_k=1,
                                                        level_gains=levels)[0].top1.class_id] for s in samples])
        return hits_at_k(predicted, labels, 1).double().mean().item()

    best: list[float | None] = [None] * len(clf.model.levels)
    baseline = best_score = top1(best)
    trials = [{"level_gains": list(best), "top1": baseline}]
    for depth in range(len(best)):
        for gain in grid:
            candidate = best[:depth] + [float(gain)] + best[depth + 1:]
            score = top1(candidate)
            trials.append({"level_gains": candidate, "top1": score})
            if score > best_score:
                best, best_score = candidate, score
    return {"level_gains": best, "gain_mode": mode, "grid": [float(g) for g in grid], "baseline_top1": baseline,
            "calibrated_top1": best_score, "trials": trials}


def _fit_agreement(clf: GuidedClassifier, right: list[_Sample], wrong: list[_Sample], prior: float) -> dict | None:
    """Logistic regression of "the guide holds the true class" on the cue's evidence score, the misleading cues
    weighted to make up ``prior`` of the data."""
    scores, targets, misleading = [], [], []
    for s, is_wrong in [(s, False) for s in right] + [(s, True) for s in wrong]:
        if s.guide is None or not s.guide.confident:
            continue
        raw = clf.logits(s.features, s.guide, "cutout")
        scores.append(float(evidence(raw.cued)[0]))
        targets.append(float(s.label in raw.ids))
        misleading.append(is_wrong)
    x, y = torch.tensor(scores, dtype=torch.float64), torch.tensor(targets, dtype=torch.float64)
    is_wrong = torch.tensor(misleading)
    if len(set(targets)) < 2 or is_wrong.all() or not is_wrong.any():
        return None
    weights = torch.where(is_wrong, prior / is_wrong.sum(), (1 - prior) / (~is_wrong).sum()) * len(x)
    scale, offset = fit_logistic(x, y, weights)
    return {"scale": scale, "offset": offset, "cues": len(targets), "wrong_cue_prior": prior,
            "auroc": auroc(x, y.bool())}


def fit_logistic(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None, ridge: float = 1e-3,
                 steps: int = 50) -> tuple[float, float]:
    """``(scale, offset)`` maximising the (``weights``-weighted) likelihood of ``y`` in {0, 1} under
    ``sigmoid(scale * x + offset)`` (Newton's method; ``ridge`` keeps it finite when the classes are separable)."""
    mean, std = x.mean(), x.std().clamp_min(1e-12)
    design = torch.stack([(x - mean) / std, torch.ones_like(x)], 1)
    weights = torch.ones_like(x) if weights is None else weights.double()
    w = torch.zeros(2, dtype=torch.float64)
    for _ in range(steps):
        p = torch.sigmoid(design @ w)
        gradient = design.T @ (weights * (p - y)) + ridge * w
        hessian = design.T @ (design * (weights * p * (1 - p))[:, None]) + ridge * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(hessian, gradient)
        w -= step
        if step.abs().max() < 1e-10:
            break
    scale = w[0] / std
    return float(scale), float(w[1] - scale * mean)


def _confidences(outputs: list, labels: list[int], scorer: Scorer) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 confidence and correctness of every output under ``scorer``."""
    confidence, correct = [], []
    for raw, label in zip(outputs, labels):
        agreement = None if raw.cued is None else scorer.agreement(raw.cued)
        probs = scorer.probabilities(raw.mode, raw.logits, agreement)[0]
        top = int(probs.argmax())
        confidence.append(float(probs[top]))
        correct.append(raw.ids[top] == label)
    return torch.tensor(confidence, dtype=torch.float64), torch.tensor(correct, dtype=torch.float64)


def _fit_temperature(outputs: list, labels: list[int], scorer: Scorer, mode: str) -> float:
    """The temperature of ``mode`` with the least binary cross-entropy of top-1 confidence vs correctness
    over the ``outputs`` of that mode (1 without any)."""
    if not outputs:
        return 1.0

    def loss(t: float) -> float:
        p, y = _confidences(outputs, labels, dataclasses.replace(scorer, temperatures={**scorer.temperatures, mode: t}))
        p = p.clamp(1e-7, 1 - 1e-7)
        return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())

    return min(TEMPERATURES, key=loss)


def _ece(outputs: list, samples: list[_Sample], scorer: Scorer) -> float:
    confidence, correct = _confidences(outputs, [s.label for s in samples], scorer)
    return calibration(confidence, correct, CALIBRATION_BINS).ece
