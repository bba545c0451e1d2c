"""crossmodal: guided visual recognition - cues select (cutout) and amplify (attention) a SeqPar network."""

from .classifier import GuidedClassifier
from .frames import FramePreprocessor
from .guide import Guide
from .result import MODES, GuidedResult, Prediction, RunCost, Timings

__all__ = ["MODES", "FramePreprocessor", "Guide", "GuidedClassifier", "GuidedResult", "Prediction", "RunCost",
           "Timings"]
