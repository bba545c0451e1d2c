"""EfficientNet-Lite (timm's ``tf_efficientnet_lite0..4``) in plain PyTorch, so the default model runs without timm.

Why: ``import timm`` cost 1.8 s of the default model's 4.0 s cold start (``timm.layers`` imports
torchvision, whose ops import ``torch._dynamo``), more than loading and running the model. This module
rebuilds the same network (TF "same" padding, BatchNorm eps 1e-3, ReLU6, timm's channel and depth rounding)
with timm's module names, so state dicts are interchangeable both ways. timm is the reference it is tested
against (``tests/test_lite_trunk.py``: equal outputs, keys and shapes for every variant and split point).

Inference (eval mode without autograd) runs faster than timm's network, within float rounding of it: every
BatchNorm folded into its convolution (:mod:`vision.nn.folding`) and the feature maps channels-last, where
oneDNN's depthwise and pointwise convolutions are faster. Measured on 2 CPU cores, one thread, lite0 cut at
``blocks.6`` at 160 px: 20.3 -> 12.8 ms at batch 1 and 354 -> 156 ms at batch 16 (folding alone: 14.8 / 275 ms,
channels-last alone: 16.2 / 226 ms). With gradients, or in training, it computes exactly what timm computes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .folding import FoldCache, folding_applies

# timm model name -> (channel multiplier, depth multiplier)
VARIANTS: dict[str, tuple[float, float]] = {
    "tf_efficientnet_lite0": (1.0, 1.0),
    "tf_efficientnet_lite1": (1.0, 1.1),
    "tf_efficientnet_lite2": (1.1, 1.2),
    "tf_efficientnet_lite3": (1.2, 1.4),
    "tf_efficientnet_lite4": (1.4, 1.8),
}
# timm's arch def, one row per stage: (repeats, kernel, stride, expansion, channels); expansion 1 is the
# depthwise-separable block ("ds_r1_k3_s1_e1_c16"), the others are inverted residuals ("ir_r2_k3_s2_e6_c24", ...)
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000  # stem and head are not scaled by the multiplier
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon


def stage_names() -> list[str]:
    """The split points, in order: the stem (``bn1``) and each stage of blocks."""
    return ["bn1"] + [f"blocks.{i}" for i in range(len(STAGES))]


def make_divisible(value: float, divisor: int = 8) -> int:
    """timm's ``make_divisible``: the nearest multiple of ``divisor``, at least ``divisor``, not below 90 %."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def stage_depths(depth_multiplier: float) -> list[int]:
    """Blocks per stage: repeats scaled by ``depth_multiplier`` and rounded up, except the first and last stage."""
    last = len(STAGES) - 1
    return [repeats if i in (0, last) else math.ceil(repeats * depth_multiplier)
            for i, (repeats, *_) in enumerate(STAGES)]


class SameConv2d(nn.Conv2d):
    """A strided convolution with TensorFlow "SAME" padding (timm's ``Conv2dSame``): the input is zero-padded
    to ``ceil(size / stride)`` outputs, the odd pixel going to the bottom / right."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            size = int(size)  # a constant while tracing: exported graphs have a fixed image size
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads, value=0), weight, bias, self.stride, 0, self.dilation, self.groups)


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """timm's ``create_conv2d(..., padding='same')``: static symmetric padding at stride 1, dynamic at stride 2."""
    if stride == 1:
        return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups, bias=False)
    return SameConv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)


class BatchNormAct(nn.BatchNorm2d):
    """BatchNorm then ReLU6 (or nothing), with the state-dict keys of timm's ``BatchNormAct2d``.

    :meth:`after` runs it on a convolution's output, folded into that convolution where folding applies.
    """

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()
        self.folded = FoldCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))

    def _apply(self, fn: Any, recurse: bool = True) -> BatchNormAct:
        self.folded.clear()  # moved or cast (``.to()``, ``.half()``): fold again from the new tensors
        return super()._apply(fn, recurse)

    def after(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """``self(conv(x))``; in inference one convolution with this BatchNorm folded in, channels-last weights
        (see :class:`EfficientNetLite`)."""
        folded = self.folded.get(conv.weight, conv.bias, self, torch.channels_last) if folding_applies(self) else None
        if folded is None:
            return self(conv(x))
        return self.act(conv._conv_forward(x, *folded))


class DepthwiseSeparable(nn.Module):
    """timm's ``DepthwiseSeparableConv`` as the lite models use it: depthwise conv, BN-ReLU6, pointwise conv, BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int):
        super().__init__()
        self.has_skip = stride == 1 and in_channels == out_channels
        self.conv_dw = conv(in_channels, in_channels, kernel, stride, groups=in_channels)
        self.bn1 = BatchNormAct(in_channels)
        self.conv_pw = conv(in_channels, out_channels, 1)
        self.bn2 = BatchNormAct(out_channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2.after(self.conv_pw, self.bn1.after(self.conv_dw, x))
        return out + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """timm's ``InvertedResidual`` without squeeze-excitation: expand, depthwise, project (linear), skip."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = make_divisible(in_channels * expansion)
        self.has_skip = stride == 1 and in_channels == out_channels
        self.conv_pw = conv(in_channels, mid, 1)
        self.bn1 = BatchNormAct(mid)
        self.conv_dw = conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct(mid)
        self.conv_pwl = conv(mid, out_channels, 1)
        self.bn3 = BatchNormAct(out_channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3.after(self.conv_pwl, self.bn2.after(self.conv_dw, self.bn1.after(self.conv_pw, x)))
        return out + x if self.has_skip else out


class EfficientNetLite(nn.Module):
    """timm's ``backbone`` (``tf_efficientnet_lite0..4``) up to ``split_point`` (one of :func:`stage_names`),
    whose ``forward`` returns the split point's features; ``split_point=None`` is the whole ImageNet classifier
    (``conv_head``, ``bn2``, ``classifier``), whose ``forward`` returns logits. Initialised as timm does.
    Features come back contiguous (NCHW) also from the channels-last inference path."""

    def __init__(self, backbone: str, split_point: str | None = None):
        super().__init__()
        if backbone not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite {backbone!r}; expected one of {sorted(VARIANTS)}")
        if split_point is not None and split_point not in stage_names():
            raise ValueError(f"split_point {split_point!r} is not a stage of {backbone}; "
                             f"expected one of {stage_names()}")
        channel_multiplier, depth_multiplier = VARIANTS[backbone]
        kept = len(STAGES) if split_point is None else stage_names().index(split_point)
        self.conv_stem = conv(3, STEM_CHANNELS, 3, stride=2)
        self.bn1 = BatchNormAct(STEM_CHANNELS)
        stages, channels = [], STEM_CHANNELS
        for (_, kernel, stride, expansion, width), depth in zip(STAGES[:kept], stage_depths(depth_multiplier)):
            out = make_divisible(width * channel_multiplier)
            blocks = []
            for i in range(depth):
                step = stride if i == 0 else 1
                blocks.append(DepthwiseSeparable(channels, out, kernel, step) if expansion == 1
                              else InvertedResidual(channels, out, kernel, step, expansion))
                channels = out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.out_channels = channels
        self.has_head = split_point is None
        if self.has_head:
            self.conv_head = conv(channels, HEAD_CHANNELS, 1)
            self.bn2 = BatchNormAct(HEAD_CHANNELS)
            self.classifier = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inference = folding_applies(self)
        if inference:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.bn1.after(self.conv_stem, x))
        if not self.has_head:
            return x.contiguous() if inference else x
        return self.classifier(F.adaptive_avg_pool2d(self.bn2.after(self.conv_head, x), 1).flatten(1))


def _init_weights(module: nn.Module) -> None:
    """timm's TensorFlow-style init (``_init_weight_goog``): conv N(0, 2 / fan_out), linear U(+-1 / sqrt(fan_out))."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
    elif isinstance(module, nn.Linear):
        bound = 1.0 / math.sqrt(module.weight.size(0))
        nn.init.uniform_(module.weight, -bound, bound)
        nn.init.zeros_(module.bias)
