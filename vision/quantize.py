"""Smaller, faster variants of an exported SeqPar file (:mod:`vision.onnx`): fp16 weights, and int8 weights and
activations (onnxruntime's static QDQ quantization, calibrated on preprocessed photos). Inputs and outputs stay
float32 and the metadata is kept, its provenance saying which variant the file is and how it was made."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .onnx import GAINS, IMAGE, read_metadata, set_metadata, write_onnx

VARIANTS = ("fp32", "fp16", "int8")


def to_fp16(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write ``source`` with float16 weights and float32 inputs and outputs at ``path`` (atomically)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    metadata = read_metadata(source)
    proto = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    _sort_nodes(proto.graph)  # the converter appends the input casts at the end
    return _write(proto, path, metadata, {"variant": "fp16"})


# The first convolutions (stem and first block) of the default model's trunk lose 8-10 top-1 points in int8 on
# the held-out photos when quantized with everything else, 1.1 when kept in float (docs: benchmarks/deploy.py).
FLOAT_CONVS = 3
TRUNK_SCOPE = "/trunk/"  # the exported trunk's node names


def to_int8(source: str | os.PathLike, path: str | os.PathLike, images: Iterable[np.ndarray], *,
            float_convs: int = FLOAT_CONVS, float_trunk: bool = False, calibration_gain: float = 2.0) -> Path:
    """Write ``source`` quantized to int8 (QDQ, per-channel weights, MinMax activation ranges) at ``path``.

    ``images``: preprocessed calibration batches ``(B, 3, S, S)`` (photos the evaluation will not see);
    a file with a gains input is calibrated on each batch twice, every gain 1 and every gain ``calibration_gain``
    (attended feature maps outside the calibrated range saturate). Their count and sha256 go into the provenance.
    Every node before the graph's ``float_convs + 1``-th convolution stays float (the input stem is the most
    sensitive part); ``float_trunk=True`` quantizes only the branches (lossless on the default model's held-out
    photos, and faster where the branches dominate: the full model).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    metadata = read_metadata(source)
    batches = [np.ascontiguousarray(b, dtype=np.float32) for b in images]
    if not batches:
        raise ValueError("int8 quantization needs at least one calibration batch of preprocessed images")
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(batch.tobytes())
    gains = metadata["gain_keys"]
    feeds = [{IMAGE: b} for b in batches] if not gains else \
        [{IMAGE: b, GAINS: np.full((1, len(gains)), g, np.float32)} for b in batches for g in (1.0, calibration_gain)]
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        keep = [n.name for n in graph.node if n.name.startswith(TRUNK_SCOPE)] if float_trunk else \
            _leading_nodes(graph, float_convs)
        quantize_static(str(prepared), str(quantized), _Feeds(feeds), quant_format=QuantFormat.QDQ,
                        nodes_to_exclude=keep,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        proto = onnx.load(str(quantized))
    calibration = {"images": int(sum(b.shape[0] for b in batches)), "sha256": digest.hexdigest(),
                   "method": "static QDQ, per-channel int8 weights, uint8 activations, MinMax",
                   "float_convs": None if float_trunk else float_convs, "float_trunk": float_trunk,
                   "gains": [1.0, calibration_gain] if gains else None}
    return _write(proto, path, metadata, {"variant": "int8", "int8_calibration": calibration})


def _leading_nodes(graph: Any, convs: int) -> list[str]:
    """Names of the nodes before the ``convs + 1``-th Conv (graph order)."""
    names, seen = [], 0
    for node in graph.node:
        seen += node.op_type == "Conv"
        if seen > convs:
            break
        names.append(node.name)
    return names


def _sort_nodes(graph: Any) -> None:
    """Order a graph's nodes topologically (stable: a node moves only behind the producers of its inputs)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        later = []
        for node in pending:
            (ordered if all(name in ready for name in node.input) else later).append(node)
            if ordered and ordered[-1] is node:
                ready.update(node.output)
        if len(later) == len(pending):
            raise ValueError(f"the graph has a cycle or an undefined input at node {later[0].name!r}")
        pending = later
    del graph.node[:]
    graph.node.extend(ordered)


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _write(proto: Any, path: str | os.PathLike, metadata: Mapping[str, Any], provenance: Mapping[str, Any]) -> Path:
    set_metadata(proto, {**metadata, "provenance": {**metadata["provenance"], **provenance}})
    return write_onnx(proto, path)
