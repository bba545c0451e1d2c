"""crossmodal: guided visual recognition - cues select (cutout) and amplify (attention) a SeqPar network.

``GuidedClassifier`` is the library API; ``python -m crossmodal.run`` / ``crossmodal`` the CLI,
``crossmodal.evaluate`` and ``crossmodal.calibrate`` the batch tools (libraries: ``crossmodal.evaluation``,
``crossmodal.calibration``). Cue models (the MiniLM mapper, the audio tagger) load on first use, in
``crossmodal.cues``. ``Guide`` is :class:`mappings.Guide`.
"""

from mappings import Guide

from .classifier import GuidedClassifier
from .frames import FramePreprocessor
from .result import MODES, GuidedResult, Prediction, RunCost, Timings
from .stream import CueStream

__all__ = ["MODES", "CueStream", "FramePreprocessor", "Guide", "GuidedClassifier", "GuidedResult", "Prediction",
           "RunCost", "Timings"]
