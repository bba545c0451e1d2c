"""YAMNet's MobileNet-v1 body in PyTorch: log-mel patches (batch, 96, 64) -> 521 AudioSet logits."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from audio.yamnet.frontend import LogMelConfig
from audio.yamnet.quant import int8_linear

# (pointwise output channels, depthwise stride) of YAMNet's 13 separable layers (`yamnet.py`, layers 2-14)
YAMNET_LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)) + ((512, 1),) * 5 + ((1024, 2), (1024, 1))


@dataclass(frozen=True)
class YAMNetConfig:
    """Architecture, features and provenance of a YAMNet model (saved as `config.json`)."""

    num_classes: int = 521
    stem_channels: int = 32
    stem_stride: int = 2
    layers: tuple[tuple[int, int], ...] = YAMNET_LAYERS
    features: LogMelConfig = LogMelConfig()
    source: dict = field(default_factory=dict, compare=False)  # where the weights came from (file, sha256)

    def to_dict(self) -> dict:
        return {"model_type": "yamnet", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "YAMNetConfig":
        data = {key: value for key, value in data.items() if key != "model_type"}
        known = set(cls.__dataclass_fields__)
        if unknown := sorted(set(data) - known):
            raise ValueError(f"unknown YAMNet config keys {unknown}; expected a subset of {sorted(known)}")
        features = LogMelConfig(**data.pop("features", {}))
        layers = tuple(tuple(layer) for layer in data.pop("layers", YAMNET_LAYERS))
        return cls(**data, features=features, layers=layers)


def pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) as TensorFlow's "same" padding does: output = ceil(input / stride), extra at the end."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def stem_conv(x: torch.Tensor, conv: nn.Conv2d, stride: int) -> torch.Tensor:
    """The stem's 3x3 convolution of the one-channel patches as the runtime computes it: the bias, then one fused
    multiply-add per tap, row by row (this matched TFLite's stem output bit for bit where checked; the library
    convolution did not). A library convolution also picks its algorithm, and its rounding, by batch size; this
    gives every patch the same bits in any batch."""
    x = pad_same(x, 3, stride)
    rows, cols = (x.shape[2] - 3) // stride + 1, (x.shape[3] - 3) // stride + 1
    out = conv.bias.view(1, -1, 1, 1).expand(x.shape[0], -1, rows, cols).contiguous()
    for ky in range(3):
        for kx in range(3):
            view = x[:, :, ky : ky + stride * (rows - 1) + 1 : stride, kx : kx + stride * (cols - 1) + 1 : stride]
            out.addcmul_(view.contiguous(), conv.weight[:, :, ky, kx].view(1, -1, 1, 1))
    return out.contiguous(memory_format=torch.channels_last)


class Int8Pointwise(nn.Module):
    """A 1x1 convolution (or, on (N, C) input, a linear layer) with int8 weights and one scale per output channel,
    run as the TFLite runtime runs it: activations quantised per pixel (`quant.int8_linear`)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(out_channels, in_channels, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels), requires_grad=False)
        self.register_buffer("_values", torch.zeros(out_channels, in_channels), persistent=False)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._values = self.weight.float()  # integer-valued float32 copy, made once per load

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return int8_linear(x, self._values, self.weight_scale, self.bias)
        out = int8_linear(x.permute(0, 2, 3, 1), self._values, self.weight_scale, self.bias)
        return out.permute(0, 3, 1, 2)  # NCHW view of a channels-last result


class SeparableBlock(nn.Module):
    """Depthwise 3x3 conv + ReLU, then pointwise int8 conv + ReLU (batch norms folded into the convolutions)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride=stride, groups=in_channels)
        self.pointwise = Int8Pointwise(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(pad_same(x, 3, self.stride)).relu_()
        return self.pointwise(x).relu_()


class YAMNet(nn.Module):
    """MobileNet-v1 on log-mel patches: a 3x3 stem, 13 separable blocks, global average pooling, 521 logits.

    `forward(patches)` takes (batch, 96, 64) log-mel patches and returns (batch, num_classes) logits; scores
    are their sigmoid. All patches of a clip run as one batch.
    """

    def __init__(self, config: YAMNetConfig = YAMNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.stem = nn.Conv2d(1, config.stem_channels, 3, stride=config.stem_stride)
        channels, blocks = config.stem_channels, []
        for out_channels, stride in config.layers:
            blocks.append(SeparableBlock(channels, out_channels, stride))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.classifier = Int8Pointwise(channels, config.num_classes)
        self.requires_grad_(False)

    def forward_features(self, patches: torch.Tensor) -> torch.Tensor:
        x = stem_conv(patches.unsqueeze(1), self.stem, self.config.stem_stride).relu_()
        return self.blocks(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.mean(dim=(2, 3)))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(patches))
