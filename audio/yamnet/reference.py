"""Google's own runtime on the TFLite export, the reference `audio.yamnet` is tested and measured against.

Needs `ai-edge-litert` (in the project's `test` extra); the library itself never imports this module.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np


def tflite_outputs(model_path: str | os.PathLike, windows: Iterable[np.ndarray], *,
                   nudge: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores (windows, 521) and log-mel patches (windows, 96, 64) that the LiteRT interpreter (default CPU
    kernels, XNNPACK) computes for 15,600-sample windows. With `nudge`, 1 % of each window's samples are first
    moved by one float32 step (to see how sensitive the runtime itself is)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as error:
        raise ImportError("the TFLite reference needs ai-edge-litert: pip install -e '.[test]'") from error
    interpreter = Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    (window_input,) = interpreter.get_input_details()
    scores_output, log_mel_output = interpreter.get_output_details()
    scores, log_mel = [], []
    for window in windows:
        window = np.asarray(window, dtype=np.float32).copy()
        if nudge is not None:
            moved = nudge.choice(len(window), len(window) // 100, replace=False)
            window[moved] = np.nextafter(window[moved], np.float32(np.inf))
        interpreter.set_tensor(window_input["index"], window[None])
        interpreter.invoke()
        scores.append(interpreter.get_tensor(scores_output["index"])[0].copy())
        log_mel.append(interpreter.get_tensor(log_mel_output["index"]).copy())
    return np.stack(scores), np.stack(log_mel)
