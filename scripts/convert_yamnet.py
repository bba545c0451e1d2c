"""Convert Google's YAMNet TFLite export into the packaged PyTorch model (`audio/yamnet/weights/`).

    python -m scripts.convert_yamnet --tflite ../shared/data/audio-models/yamnet/yamnet.tflite \
        --class-map ../shared/data/audio-models/yamnet/yamnet_class_map.csv

Reads the flatbuffer with the `tflite` parser package and checks that the graph is the network `audio.yamnet`
builds: the operator sequence, strides, "same" padding and ReLU of every layer, and a front end whose window,
padding, int8 DFT and mel matrices and log offset equal the ones `LogMelFrontend` derives from its formulas.
Then it writes the weights as a state dict: convolution kernels moved from TFLite's OHWI layout to PyTorch's
OIHW, the stem's float32 kernel as it is, the int8 depthwise kernels dequantised as TFLite's DEQUANTIZE op does
((q - zero_point) * scale, per channel where the file has per-channel scales; float16 tensors widened), the
int8 kernels of the pointwise convolutions and the classifier kept as int8 with one scale per output channel
(the runtime multiplies them in integers). `YAMNetTagger.save_pretrained` writes config.json (with the sources'
SHA-256), model.safetensors, labels.tsv, LICENSE and NOTICE. The same inputs give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import tflite
import torch

from audio.build_label_table import read_class_labels_csv
from audio.yamnet.frontend import (
    LogMelConfig,
    mel_matrix,
    periodic_hann,
    quantize_symmetric,
    rdft_matrices,
)
from audio.yamnet.model import YAMNet, YAMNetConfig
from audio.yamnet.tagger import PACKAGED, YAMNetTagger
from xmcommon.cli import exit_process, run_cli

OPERATORS = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
DTYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
          tflite.TensorType.INT8: np.int8, tflite.TensorType.INT32: np.int32}
FRONT_END_OPS = ["RESHAPE", "SLICE", "RESHAPE", "GATHER", "RESHAPE", "MUL", "PAD", "FULLY_CONNECTED", "MUL",
                 "FULLY_CONNECTED", "MUL", "ADD", "SQRT", "FULLY_CONNECTED", "LOG", "STRIDED_SLICE", "RESHAPE",
                 "GATHER", "RESHAPE"]
OPTIONS = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions}


class TFLiteGraph:
    """The operators and constant tensors of a single-subgraph .tflite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.model = tflite.Model.GetRootAsModel(self.data, 0)
        if self.model.SubgraphsLength() != 1:
            raise ValueError(f"{path}: expected one subgraph, got {self.model.SubgraphsLength()}")
        self.graph = self.model.Subgraphs(0)
        self.ops, self.producer = [], {}
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = OPERATORS.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            entry = (name, list(op.InputsAsNumpy()), list(op.OutputsAsNumpy()), op)
            self.ops.append(entry)
            for output in entry[2]:
                self.producer[output] = entry

    def raw(self, index: int) -> np.ndarray:
        """A constant tensor's stored values (int8 stays int8)."""
        tensor = self.graph.Tensors(index)
        buffer = self.model.Buffers(tensor.Buffer())
        if tensor.Type() not in DTYPES or buffer.DataLength() == 0:
            raise ValueError(f"{self.path}: tensor {index} ({tensor.Name().decode()}) is not a supported constant")
        shape = tuple(tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        return buffer.DataAsNumpy().view(DTYPES[tensor.Type()]).reshape(shape)

    def quantization(self, index: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(scales, zero points, quantized dimension) of a quantised tensor, else None."""
        q = self.graph.Tensors(index).Quantization()
        if q is None or q.ScaleLength() == 0:
            return None
        return q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.int64), q.QuantizedDimension()

    def dequantized(self, index: int) -> np.ndarray:
        """A constant as float32, computed as TFLite's DEQUANTIZE does; follows a DEQUANTIZE op to its input."""
        producer = self.producer.get(index)
        if producer is not None:
            if producer[0] != "DEQUANTIZE":
                raise ValueError(f"{self.path}: tensor {index} is computed by {producer[0]}, not a constant")
            index = producer[1][0]
        values, quantization = self.raw(index), self.quantization(index)
        if quantization is None:
            return values.astype(np.float32)
        scales, zero_points, axis = quantization
        shape = [1] * values.ndim
        if len(scales) > 1:
            shape[axis] = len(scales)
        centered = (values.astype(np.int64) - zero_points.reshape(shape)).astype(np.float32)
        return centered * scales.reshape(shape)

    def int8(self, index: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """int8 values and per-output-channel float32 scales of a symmetric int8 weight (axis 0 = outputs)."""
        values, quantization = self.raw(index), self.quantization(index)
        if values.dtype != np.int8 or quantization is None:
            raise ValueError(f"{self.path}: tensor {index} is not an int8 weight")
        scales, zero_points, axis = quantization
        if np.any(zero_points != 0) or (len(scales) > 1 and axis != 0):
            raise ValueError(f"{self.path}: tensor {index}: expected symmetric scales per tensor or per output")
        return values, np.broadcast_to(scales, (channels,)).astype(np.float32)

    def options(self, entry, name: str):
        options = OPTIONS[name]()
        table = entry[3].BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        return options


def check(condition: bool, path: Path, what: str) -> None:
    if not condition:
        raise ValueError(f"{path}: not the YAMNet graph audio.yamnet expects: {what}")


def check_front_end(graph: TFLiteGraph, features: LogMelConfig) -> None:
    """The front end's constants equal what LogMelFrontend computes: window, padding, offset and int8 matrix values
    exactly, matrix scales within 1e-5 (TF computed the mel filters in float32: their peak, hence the mel scale,
    is 1.9e-6 lower than the float64 formula's)."""
    ops, path = graph.ops, graph.path
    check([op[0] for op in ops[: len(FRONT_END_OPS)]] == FRONT_END_OPS, path, "front-end operators")
    check(np.array_equal(graph.raw(ops[5][1][1]).ravel(), periodic_hann(features.window_samples)), path, "window")
    padding = features.fft_length - features.window_samples
    check(graph.raw(ops[6][1][1]).tolist() == [[0, 0], [padding // 2, padding - padding // 2]], path, "frame padding")
    for op, matrix in zip((ops[7], ops[9], ops[13]), (*rdft_matrices(features.fft_length), mel_matrix(features))):
        values, scale = quantize_symmetric(matrix)
        stored, scales = graph.int8(op[1][1], len(matrix))
        check(np.array_equal(stored, values) and np.allclose(scales, scale, rtol=1e-5, atol=0), path, f"matrix of {op[2]}")
    check(np.all(graph.raw(ops[13][1][2]) == np.float32(features.log_offset)), path, "log offset")


def convert(graph: TFLiteGraph, config: YAMNetConfig) -> dict[str, torch.Tensor]:
    """The state dict of `YAMNet(config)` read from the graph (see the module docstring)."""
    path, body = graph.path, [op for op in graph.ops[len(FRONT_END_OPS):] if op[0] != "DEQUANTIZE"]
    expected = ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * len(config.layers) + ["MEAN", "FULLY_CONNECTED",
                                                                                        "LOGISTIC"]
    check([op[0] for op in body] == expected, path, f"body operators {[op[0] for op in body]}")
    strides = [config.stem_stride] + [s for _, stride in config.layers for s in (stride, 1)]
    for entry, stride in zip(body, strides):
        options = graph.options(entry, entry[0])
        check((options.StrideH(), options.StrideW(), options.Padding(), options.FusedActivationFunction())
              == (stride, stride, tflite.Padding.SAME, tflite.ActivationFunctionType.RELU), path, f"{entry[2]}")

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array))  # a writable copy

    stem = body[0][1]
    state = {"stem.weight": tensor(graph.dequantized(stem[1]).transpose(0, 3, 1, 2)),
             "stem.bias": tensor(graph.dequantized(stem[2]))}
    for i, (depthwise, pointwise) in enumerate(zip(body[1:-3:2], body[2:-3:2])):
        prefix = f"blocks.{i}."
        state[prefix + "depthwise.weight"] = tensor(graph.dequantized(depthwise[1][1]).transpose(3, 0, 1, 2))
        state[prefix + "depthwise.bias"] = tensor(graph.dequantized(depthwise[1][2]))
        channels = config.layers[i][0]
        values, scales = graph.int8(pointwise[1][1], channels)
        state[prefix + "pointwise.weight"] = tensor(values.reshape(channels, -1))
        state[prefix + "pointwise.weight_scale"] = tensor(scales)
        state[prefix + "pointwise.bias"] = tensor(graph.dequantized(pointwise[1][2]))
    check(graph.raw(body[-3][1][1]).tolist() == [1, 2], path, "global average pooling over time and frequency")
    values, scales = graph.int8(body[-2][1][1], config.num_classes)
    state.update({"classifier.weight": tensor(values), "classifier.weight_scale": tensor(scales),
                  "classifier.bias": tensor(graph.dequantized(body[-2][1][2]))})
    return state


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", type=Path, required=True, help="YAMNet's TF-Hub TFLite export (yamnet.tflite)")
    parser.add_argument("--class-map", type=Path, required=True, help="yamnet_class_map.csv (index,mid,display_name)")
    parser.add_argument("--out", type=Path, default=PACKAGED, help="output directory (default: the packaged one)")
    return parser


def main(args: argparse.Namespace) -> dict:
    for path in (args.tflite, args.class_map):
        if not path.is_file():
            raise FileNotFoundError(f"not found: {path}")
    rows = read_class_labels_csv(args.class_map, header=True)
    source = {"tflite": args.tflite.name, "tflite_sha256": sha256(args.tflite),
              "class_map": args.class_map.name, "class_map_sha256": sha256(args.class_map)}
    config = YAMNetConfig(num_classes=len(rows), source=source)
    graph = TFLiteGraph(args.tflite)
    check_front_end(graph, config.features)
    model = YAMNet(config)
    model.load_state_dict(convert(graph, config), strict=True)
    mids, labels = zip(*rows)
    out = YAMNetTagger(model, labels, mids).save_pretrained(args.out)
    return {"out": str(out), "files": {p.name: p.stat().st_size for p in sorted(out.iterdir())}, **source}


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    exit_process(cli())
