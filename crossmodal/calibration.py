"""The attention gain per tree level that maximises guided top-1: the library behind ``python -m crossmodal.calibrate``.

The paper tuned one gain scalar per dataset by hand. Here a coordinate search over a grid, level by
level (starting from the guides' own gains), picks the gain of the cued nodes at each level on a
validation folder; :func:`calibrated_config` stores it as the model's typed ``config.calibration``,
where :class:`GuidedClassifier` reads it. Trunk features are computed once per image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm import tqdm

from mappings import Guide
from vision import SeqParConfig
from vision.eval.metrics import hits_at_k

from .classifier import GuidedClassifier
from .evaluation import EvalItem, guide_for_cue

DEFAULT_GRID = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def calibrate(clf: GuidedClassifier, items: Sequence[EvalItem], *, mode: str = "cutout+attend",
              grid: Sequence[float] = DEFAULT_GRID, progress: bool = True) -> dict[str, Any]:
    """Best gain per level (``None``: keep the guides' gains) and the top-1 before and after."""
    if mode not in ("attend", "cutout+attend"):
        raise ValueError(f"calibration needs an attention mode ('attend' or 'cutout+attend'), got {mode!r}")
    if not grid or any(not 0 <= g < float("inf") for g in grid):
        raise ValueError(f"grid must be non-empty finite gains >= 0, got {list(grid)}")
    cached: list[tuple[torch.Tensor, Guide | None, int]] = []
    guides: dict[str, Guide] = {}
    for item in tqdm(items, desc="calibrate: trunk features", unit="img", disable=not progress):
        if item.cue is not None and item.cue not in guides:
            guides[item.cue] = guide_for_cue(clf, item.cue)
        features = clf.trunk_features(clf.preprocessor([item.image.path]))
        cached.append((features, guides.get(item.cue) if item.cue else None, item.image.class_id))
    if not any(g is not None and g.confident for _, g, _ in cached):
        raise ValueError("no image has a confident guide: nothing to calibrate")

    labels = torch.tensor([label for _, _, label in cached])

    def top1(levels: list[float | None]) -> float:
        predicted = torch.tensor([[clf.predict_features(f, g, mode, top_k=1, level_gains=levels)[0].top1.class_id]
                                  for f, g, _ in cached])
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
    return {"level_gains": best, "mode": mode, "grid": [float(g) for g in grid], "images": len(cached),
            "baseline_top1": baseline, "calibrated_top1": best_score, "trials": trials}


def calibrated_config(config: SeqParConfig, level_gains: Sequence[float | None],
                      record: Mapping[str, Any]) -> SeqParConfig:
    """``config`` with ``calibration.level_gains`` set, and ``record`` (how they were found) in its metadata."""
    calibration = dataclasses.replace(config.calibration, level_gains=tuple(level_gains))
    return config.replace(calibration=calibration, metadata={**config.metadata, "calibration_run": dict(record)})
