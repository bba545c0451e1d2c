"""The packaged YAMNet tagger as a self-describing ONNX file: waveform windows -> 521 scores, front end inside.

Input ``waveforms`` ``(windows, 15600)`` float32: 16 kHz mono windows of 0.975 s (a shorter window zero-padded
at the end, as the tagger pads one); output ``scores`` ``(windows, 521)``: the sigmoid scores of
:meth:`YAMNetTagger.window_scores`. The log-mel front end (framing, Hann window, the int8 DFT and mel matrices
as matrix products, log) is part of the graph, so a robot feeds raw samples. Every ``metadata_props`` value is
JSON: the label mids and names, the windowing (rate, window, hop), the pooling and silence rule of the library
(``audio.windows``) and provenance. Scores follow the PyTorch tagger closely, not bit for bit: the model
quantises activations to int8 on the fly (as Google's runtime does), so a last-bit difference of onnxruntime's
log or convolution moves a value across a rounding step now and then (``tests/test_audio_onnx.py`` measures it).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audio.windows import MAX_HELD_SILENCE_SECONDS, SILENCE_PEAK
from audio.yamnet.tagger import YAMNetTagger
from xmcommon.files import atomic_write_bytes

FORMAT = "crossmodal.audio-tagger/1"
OPSET = 17
WAVEFORMS, SCORES = "waveforms", "scores"


class _Graph(nn.Module):
    """What the file computes: front end, YAMNet, sigmoid, per window."""

    def __init__(self, tagger: YAMNetTagger):
        super().__init__()
        self.frontend, self.model = tagger.frontend, tagger.model

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(self.frontend(waveforms)))


def tagger_metadata(tagger: YAMNetTagger, opset: int = OPSET) -> dict[str, Any]:
    """The file's ``metadata_props`` (each value JSON)."""
    import onnx

    return {
        "format": FORMAT,
        "model_type": "yamnet",
        "mids": list(tagger.mids),
        "labels": list(tagger.labels),
        "sampling_rate": tagger.sampling_rate,
        "window_samples": tagger.window_samples,
        "hop_samples": tagger.hop_samples,
        "pooling": tagger.default_pooling,
        "drop_silence": tagger.drop_silence,
        "silence_peak": SILENCE_PEAK,
        "max_held_silence_seconds": MAX_HELD_SILENCE_SECONDS,
        "inputs": [WAVEFORMS],
        "outputs": [SCORES],
        "provenance": {"weights": tagger.model.config.source, "torch": torch.__version__,
                       "onnx": onnx.__version__, "opset": opset},
    }


def export_tagger_onnx(tagger: YAMNetTagger, path: str | os.PathLike, *, opset: int = OPSET) -> Path:
    """Write ``tagger`` as an ONNX file at ``path`` (atomically, after ``onnx.checker``); see the module doc."""
    import onnx

    windows = torch.zeros(2, tagger.window_samples)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(_Graph(tagger).eval(), (windows,), buffer, dynamo=False, opset_version=opset,
                          input_names=[WAVEFORMS], output_names=[SCORES],
                          dynamic_axes={WAVEFORMS: {0: "windows"}, SCORES: {0: "windows"}}, do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {k: json.dumps(v, allow_nan=False) for k, v in tagger_metadata(tagger, opset).items()})
    proto.producer_name = "crossmodal"
    onnx.checker.check_model(proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, proto.SerializeToString())

