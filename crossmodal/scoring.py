"""From logits to the numbers a result reports: temperature-scaled probabilities and the cue agreement.

The cue agreement is the probability that the image shows one of the cued classes, a logistic map of the
cue's evidence: the highest plain (unattended) logit among the cued classes, which the cutout computes
anyway. ``crossmodal.calibrate`` fits the map's ``(scale, offset)`` and one temperature per mode on
validation photos (``config.calibration``); an uncalibrated model uses scale 1, offset 0 and temperature 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vision import Calibration

from .result import CONDITIONAL_MODES


def evidence(cued_logits: torch.Tensor) -> torch.Tensor:
    """A cue's evidence score per image: the highest plain logit among the cued classes (``(B, K)`` -> ``(B,)``)."""
    return cued_logits.float().max(1).values


@dataclass(frozen=True)
class Scorer:
    """Temperatures per mode and the agreement map, from a model's calibration."""

    temperatures: dict[str, float]
    scale: float = 1.0
    offset: float = 0.0

    @classmethod
    def from_calibration(cls, calibration: Calibration) -> Scorer:
        scale, offset = calibration.agreement or (1.0, 0.0)
        return cls(dict(calibration.temperatures), scale, offset)

    def agreement(self, cued_logits: torch.Tensor) -> torch.Tensor:
        """``(B,)`` probabilities that each image shows a cued class."""
        return torch.sigmoid(self.scale * evidence(cued_logits) + self.offset)

    def probabilities(self, mode: str, logits: torch.Tensor, agreement: torch.Tensor | None) -> torch.Tensor:
        """Softmax of ``logits / T(mode)``; in the modes whose outputs are the guide's classes, times the agreement."""
        probs = torch.softmax(logits.float() / self.temperatures.get(mode, 1.0), dim=1)
        return probs * agreement[:, None] if mode in CONDITIONAL_MODES else probs
