"""crossmodal: guided visual recognition - cues select (cutout) and amplify (attention) a SeqPar network.

``GuidedClassifier`` is the library API; ``python -m crossmodal.run`` / ``crossmodal`` the CLI,
``crossmodal.evaluate`` and ``crossmodal.calibrate`` the batch tools (libraries: ``crossmodal.evaluation``,
``crossmodal.calibration``). Cue models (the MiniLM mapper, the audio tagger) load on first use, in
``crossmodal.cues``. ``Guide`` is :class:`mappings.Guide`.

The names below are imported on first access (PEP 562), so that ``python -m crossmodal.run`` can check its
arguments, and answer ``--help``, before torch and the vision stack load.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"GuidedClassifier": ".classifier", "FramePreprocessor": ".frames", "MODES": ".result",
            "GuidedResult": ".result", "Prediction": ".result", "RunCost": ".result", "Timings": ".result",
            "CueStream": ".stream", "Guide": "mappings"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
