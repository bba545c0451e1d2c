"""crossmodal: guided visual recognition - cues select (cutout) and amplify (attention) a SeqPar network.

``GuidedClassifier`` is the library API; ``python -m crossmodal.run`` / ``crossmodal`` the CLI,
``crossmodal.evaluate`` and ``crossmodal.calibrate`` the batch tools. Cue models (the MiniLM mapper,
the AST tagger) load on first use, in ``crossmodal.cues``.
"""

from .classifier import GuidedClassifier
from .frames import FramePreprocessor
from .guide import Guide
from .result import MODES, GuidedResult, Prediction, RunCost, Timings
from .stream import CueStream

__all__ = ["MODES", "CueStream", "FramePreprocessor", "Guide", "GuidedClassifier", "GuidedResult", "Prediction",
           "RunCost", "Timings"]
