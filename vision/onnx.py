"""Export a SeqPar model or cutout to a self-describing ONNX file, and run such a file in onnxruntime.

The graph holds only the model's own branches (a cutout's file has just the trunk and the kept branches).
Inputs: ``image`` ``(B, 3, S, S)`` float32, preprocessed as the metadata's ``preprocessing`` says, and (when
exported with gains) ``gains`` ``(B or 1, N)``: one top-down gain per tree node, in the order of the metadata's
``gain_keys`` (class ids for leaves, node names for inner nodes; 1 = no attention). Outputs: ``logits``
``(B, K)`` over ``class_ids`` (attended when there is a gains input) and, with gains, ``plain_logits``
(the logits without attention, which the cue agreement reads). The graph computes exactly
:meth:`SeqParModel.attend_branches`. Every ``metadata_props`` value is JSON (see :func:`onnx_metadata`), so
numpy + onnxruntime + Pillow suffice to preprocess, attend and label at run time.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmcommon.files import atomic_write_bytes

from .io import model_digest
from .model import Gains, SeqParModel

FORMAT = "crossmodal.seqpar/1"
OPSET = 17
IMAGE, GAINS, LOGITS, PLAIN_LOGITS = "image", "gains", "logits", "plain_logits"
PREPROCESSING_STEPS = (
    "RGB 8-bit image; resize (interpolation) so the short side is floor(image_size / crop_pct) ('squash': both "
    "sides); crop the centre image_size x image_size ('border': timm's ResizeKeepRatio + CenterCropOrPad); "
    "scale to [0, 1]; subtract mean and divide by std per channel; NCHW float32"
)


class _Graph(nn.Module):
    """What the ONNX file computes: trunk, then the branches with (optional) per-node gains."""

    def __init__(self, model: SeqParModel, gains: bool):
        super().__init__()
        self.model = model
        self.sizes = [level.groups for level in model.levels]
        self.with_gains = gains
        self.training = False  # only this wrapper's flag: the model's own mode is export_onnx's business

    def forward(self, image: torch.Tensor, gains: torch.Tensor | None = None) -> Any:
        features = self.model.trunk(image)
        if not self.with_gains:
            return self.model.forward_branches(features, [None] * len(self.sizes))
        return self.model.attend_branches(features, list(torch.split(gains, self.sizes, 1)))


def gain_keys(model: SeqParModel) -> list[int | str]:
    """The ``gains`` input's columns: every tree node level by level, a leaf as its class id, an inner node by name."""
    return [model.class_ids[n.class_index] if n.is_leaf else n.name
            for nodes in model.hierarchy.levels for n in nodes]


def gain_vector(model: SeqParModel, gains: Gains, batch_size: int = 1) -> np.ndarray:
    """The ``gains`` input ``(B or 1, N)`` for ``gains`` as :meth:`SeqParModel.level_gains` takes them (1 elsewhere)."""
    levels = model.level_gains(gains, batch_size)
    rows = max((g.shape[0] for g in levels if g is not None), default=1)
    return torch.cat([torch.ones(rows, level.groups) if g is None else g.float().cpu().expand(rows, -1)
                      for g, level in zip(levels, model.levels)], 1).numpy()


def onnx_metadata(model: SeqParModel, *, gains: bool, provenance: Mapping[str, Any] | None = None,
                  opset: int = OPSET) -> dict[str, Any]:
    """The file's ``metadata_props`` (each value JSON): labels, preprocessing, calibration, gains and provenance."""
    import onnx

    config = model.config
    return {
        "format": FORMAT,
        "class_ids": list(model.class_ids),
        "class_names": list(model.class_names),
        "preprocessing": {"image_size": config.image_size, **dataclasses.asdict(config.preprocessing),
                          "steps": PREPROCESSING_STEPS},
        "calibration": dataclasses.asdict(config.calibration),
        "hierarchy": config.hierarchy,
        "gain_keys": gain_keys(model) if gains else None,
        "inputs": [IMAGE, GAINS] if gains else [IMAGE],
        "outputs": [LOGITS, PLAIN_LOGITS] if gains else [LOGITS],
        "provenance": {"model_digest": model_digest(model), "backbone": config.backbone,
                       "split_point": config.split_point, "topology": config.topology,
                       "model_metadata": config.metadata, "torch": torch.__version__, "onnx": onnx.__version__,
                       "opset": opset, "variant": "fp32", **dict(provenance or {})},
    }


def export_onnx(model: SeqParModel, path: str | os.PathLike, *, gains: bool = True,
                provenance: Mapping[str, Any] | None = None, opset: int = OPSET) -> Path:
    """Write ``model`` (float32) as an ONNX file at ``path`` (atomically) with a dynamic batch; see the module doc.

    ``gains=True`` adds the ``gains`` input and the ``plain_logits`` output; ``provenance`` is merged into the
    metadata's provenance (e.g. what the model was cut out of). ``onnx.checker`` validates the file first.
    """
    import onnx

    weight = next(model.parameters())
    if weight.dtype != torch.float32:
        raise ValueError(f"export_onnx needs a float32 model, got {weight.dtype} (fp16 and int8 variants are made "
                         "from the float32 file: vision.quantize)")
    size = model.config.image_size
    image = torch.zeros(2, 3, size, size, device=weight.device)
    args: tuple = (image,)
    axes = {IMAGE: {0: "batch"}, LOGITS: {0: "batch"}}
    if gains:
        args = (image, torch.ones(1, sum(level.groups for level in model.levels), device=weight.device))
        axes.update({GAINS: {0: "gain_batch"}, PLAIN_LOGITS: {0: "batch"}})
    buffer = io.BytesIO()
    training = model.training
    try:
        model.train(False)  # the file is the inference graph (BatchNorm with running statistics)
        _trace(model, args, buffer, axes, opset)
    finally:
        if training:
            model.train(True)
    proto = onnx.load_from_string(buffer.getvalue())
    set_metadata(proto, onnx_metadata(model, gains=gains, provenance=provenance, opset=opset))
    return write_onnx(proto, path)


def _trace(model: SeqParModel, args: tuple, buffer: io.BytesIO, axes: dict, opset: int) -> None:
    gains = len(args) == 2
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(_Graph(model, gains), args, buffer, dynamo=False, opset_version=opset,
                          input_names=[IMAGE, GAINS][: len(args)],
                          output_names=[LOGITS, PLAIN_LOGITS] if gains else [LOGITS], dynamic_axes=axes,
                          do_constant_folding=True)


def export_classes(model: SeqParModel, classes: Sequence[int] | None, path: str | os.PathLike, *,
                   gains: bool = True, provenance: Mapping[str, Any] | None = None,
                   parent_digest: str | None = None) -> Path:
    """Export ``model`` (``classes=None``) or its cutout to ``classes`` (label ids); a cutout's provenance names
    its parent (``parent_digest``: :func:`vision.io.model_digest` of ``model``, computed when not given)."""
    if classes is None:
        return export_onnx(model, path, gains=gains, provenance=provenance)
    parent = {"digest": parent_digest or model_digest(model), "num_classes": model.config.num_classes}
    return export_onnx(model.cutout(list(classes), share_trunk=True), path, gains=gains,
                       provenance={"cutout_of": parent, **dict(provenance or {})})


def set_metadata(proto: Any, metadata: Mapping[str, Any]) -> None:
    """Replace an ONNX model's ``metadata_props`` by ``metadata`` (values as strict JSON)."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value, allow_nan=False)
    proto.producer_name = "crossmodal"


def write_onnx(proto: Any, path: str | os.PathLike) -> Path:
    """Check ``proto`` with ``onnx.checker`` and write it to ``path`` atomically."""
    import onnx

    onnx.checker.check_model(proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, proto.SerializeToString())


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON-decoded ``metadata_props`` of an exported file; ValueError for a file this module did not write."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 (protobuf raises its own DecodeError)
        raise ValueError(f"{path} is not an ONNX file: {err}") from err
    return _decode({p.key: p.value for p in proto.metadata_props}, path)


def _decode(props: Mapping[str, str], where: Any) -> dict[str, Any]:
    try:
        metadata = {k: json.loads(v) for k, v in props.items()}
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: metadata is not JSON ({err})") from err
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{where} is not a SeqPar export (metadata format {metadata.get('format')!r}, "
                         f"expected {FORMAT!r})")
    return metadata


class OnnxSeqPar:
    """An exported SeqPar file in onnxruntime: ``run(images, gains=None) -> (logits, plain_logits)``.

    Thread-safe (onnxruntime sessions are); ``threads`` bounds the intra-op threads (default: onnxruntime's).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata = _decode(self.session.get_modelmeta().custom_metadata_map, path)
        self.class_ids: tuple[int, ...] = tuple(self.metadata["class_ids"])
        self.has_gains = GAINS in self.metadata["inputs"]

    def run(self, images: np.ndarray, gains: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(logits, plain logits) for preprocessed ``images`` ``(B, 3, S, S)``; ``gains`` ``(B or 1, N)``
        needs a file exported with gains (without: the logits are plain, and returned twice)."""
        feeds = {IMAGE: np.ascontiguousarray(images, dtype=np.float32)}
        if gains is not None:
            if not self.has_gains:
                raise ValueError(f"{self.path} was exported without a gains input; export it with gains=True")
            feeds[GAINS] = np.ascontiguousarray(gains, dtype=np.float32)
        elif self.has_gains:
            feeds[GAINS] = np.ones((1, len(self.metadata["gain_keys"])), dtype=np.float32)
        outputs = self.session.run(None, feeds)
        return outputs[0], outputs[-1]
