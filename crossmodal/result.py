"""What a guided prediction returns: top-k classes, what ran and what it cost, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mappings import Guide

MODES = ("unguided", "attend", "cutout", "cutout+attend", "mask")
GUIDED_MODES = MODES[1:]
CONDITIONAL_MODES = ("cutout", "cutout+attend", "mask")  # outputs are the guide's classes only


@dataclass(frozen=True)
class Prediction:
    class_id: int
    name: str
    prob: float

    def to_dict(self) -> dict[str, Any]:
        return {"class_id": self.class_id, "name": self.name, "prob": self.prob}


@dataclass(frozen=True)
class RunCost:
    """Parameters and MACs per image of the network that ran, next to the full model's."""

    params: int
    macs: int
    full_params: int
    full_macs: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def param_reduction(self) -> float:
        """Fraction of the full model's parameters not used (0.25 = 25 % fewer)."""
        return 1.0 - self.params / self.full_params

    @property
    def mac_reduction(self) -> float:
        return 1.0 - self.macs / self.full_macs

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "macs": self.macs, "gmacs": self.gmacs, "full_params": self.full_params,
                "full_macs": self.full_macs, "full_gmacs": self.full_macs / 1e9,
                "param_reduction": self.param_reduction, "mac_reduction": self.mac_reduction}


@dataclass(frozen=True)
class Timings:
    """Milliseconds per stage for the whole call (the frames of a batch share them)."""

    preprocess_ms: float
    trunk_ms: float
    select_ms: float  # cutout lookup, or build on a cache miss
    branches_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.trunk_ms + self.select_ms + self.branches_ms

    def to_dict(self) -> dict[str, float]:
        return {"preprocess_ms": self.preprocess_ms, "trunk_ms": self.trunk_ms, "select_ms": self.select_ms,
                "branches_ms": self.branches_ms, "total_ms": self.total_ms}


@dataclass(frozen=True)
class GuidedResult:
    """One frame's prediction. ``mode`` is what ran; ``fallback`` says why it differs from ``requested_mode``.

    ``gains`` are the gains actually applied (only keys the network that ran knows), ``cutout_cached``
    whether the cutout came from the cache (``None`` without a cutout). ``cue_agreement`` is the
    probability that the image shows one of the cued classes (``None`` unguided): how much the image
    supports the cue. In ``cutout``, ``cutout+attend`` and ``mask`` modes a prediction's ``prob`` is
    ``cue_agreement`` times its probability among the guide's classes, so a wrong cue is not a
    confident answer.
    """

    predictions: tuple[Prediction, ...]
    mode: str
    requested_mode: str
    fallback: str | None
    cost: RunCost
    guide: Guide | None
    gains: tuple[tuple[int | str, float], ...]
    timings: Timings
    cutout_cached: bool | None = None
    cue_agreement: float | None = None

    @property
    def top1(self) -> Prediction:
        return self.predictions[0]

    def to_dict(self) -> dict[str, Any]:
        return {"predictions": [p.to_dict() for p in self.predictions], "mode": self.mode,
                "requested_mode": self.requested_mode, "fallback": self.fallback, "cost": self.cost.to_dict(),
                "guide": self.guide.to_dict() if self.guide is not None else None,
                "gains": {str(k): v for k, v in self.gains}, "timings": self.timings.to_dict(),
                "cutout_cached": self.cutout_cached, "cue_agreement": self.cue_agreement}
