"""Grouped modules: G sibling branches of one tree level run as one op per layer.

Every tensor of a grouped module is laid out group-major along its first dimension (group ``g``
owns rows ``g*k:(g+1)*k``), so ``select(idx)`` slices any module down to a subset of its groups.
A level's input is either ``(B, G*C, H, W)`` (one slice per branch) or, when all branches share
one parent, the parent's ``(B, C, H, W)`` map (``shared=True``): a grouped conv's weight
``(G*out, C, k, k)`` applied densely to a shared map equals the grouped conv on G copies of it.

Every ``forward`` also takes ``part=(start, stop)``: run only groups ``start:stop`` on an input that
holds only theirs, on views of this module's tensors (no copies). A tree level runs its branches
in such chunks (see :class:`vision.model.BranchLevel`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xmcommon.threads import MODEL_BUILD_LOCK

from .meta import meta_device

Part = tuple[int, int]  # groups start:stop


class Grouped(nn.Module):
    """Base of grouped modules: remembers its constructor arguments so it can be sliced."""

    def __init__(self, groups: int, **kwargs: Any):
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.groups = groups
        self._kwargs = kwargs

    def select(self, idx: torch.Tensor) -> Grouped:
        """A new module holding only groups ``idx`` (copies; this module is untouched)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        if len(idx) == 0:
            raise ValueError("select needs at least one group")
        with MODEL_BUILD_LOCK, meta_device():  # see xmcommon.threads
            new = type(self)(groups=len(idx), **self._kwargs)
        state = {k: _slice_groups(v, self.groups, idx) for k, v in self.state_dict().items()}
        new.load_state_dict(state, assign=True)
        new.train(self.training)
        return new

    def part_groups(self, part: Part | None) -> int:
        """How many groups ``part`` holds (all of them for ``None``)."""
        return self.groups if part is None else part[1] - part[0]

    def rows(self, t: torch.Tensor | None, part: Part | None) -> torch.Tensor | None:
        """The rows of groups ``part`` of a group-major tensor of this module (a view)."""
        if t is None or part is None:
            return t
        per_group = t.shape[0] // self.groups
        return t[part[0] * per_group : part[1] * per_group]


def _slice_groups(t: torch.Tensor, groups: int, idx: torch.Tensor) -> torch.Tensor:
    """Rows of groups ``idx`` of a group-major tensor (a copy)."""
    if t.ndim == 0:
        return t.clone()
    rows = t.reshape(groups, -1)
    # A stack of row views: measured ~100x faster on CPU than index_select for a few wide rows.
    return torch.stack([rows[i] for i in idx.tolist()]).reshape(-1, *t.shape[1:])


def expand_shared(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Turn a shared ``(B, C, H, W)`` map into ``(B, G*C, H, W)`` (one copy per branch; the map itself for one)."""
    return x if groups == 1 else x.repeat(1, groups, 1, 1)


def add_residual(out: torch.Tensor, x: torch.Tensor, groups: int, shared: bool) -> torch.Tensor:
    """``out + x`` where ``x`` may be a shared map broadcast over the groups."""
    if not shared:
        return out + x
    b, _, h, w = out.shape
    return (out.view(b, groups, -1, h, w) + x.unsqueeze(1)).view(b, -1, h, w)


def apply_gain(x: torch.Tensor, gain: torch.Tensor | None, groups: int) -> torch.Tensor:
    """Multiply each group's feature maps by its gain (``gain``: ``(B or 1, G)``)."""
    if gain is None:
        return x
    b, _, h, w = x.shape
    return (x.view(b, groups, -1, h, w) * gain.to(x.dtype)[:, :, None, None, None]).view(b, -1, h, w)


class GroupedConv2d(Grouped):
    """G independent convolutions (or depthwise convolutions) as one grouped convolution."""

    def __init__(self, groups: int, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, depthwise: bool = False, bias: bool = False):
        super().__init__(groups, in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size,
                         stride=stride, depthwise=depthwise, bias=bias)
        if depthwise and in_channels != out_channels:
            raise ValueError("a depthwise convolution keeps its channel count")
        self.stride = stride
        self.padding = kernel_size // 2 if stride == 1 or kernel_size % 2 else 0
        self.depthwise = depthwise
        self.in_channels = in_channels
        self.weight = nn.Parameter(torch.empty(groups * out_channels, 1 if depthwise else in_channels,
                                               kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(groups * out_channels)) if bias else None

    def forward(self, x: torch.Tensor, shared: bool = False, part: Part | None = None,
                weights: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> torch.Tensor:
        """``weights``: the ``(weight, bias)`` rows of ``part``'s groups to use instead of this module's own."""
        groups = self.part_groups(part)
        weight, bias = weights if weights is not None else (self.rows(self.weight, part), self.rows(self.bias, part))
        if shared and self.depthwise:
            x, shared = expand_shared(x, groups), False
        stride = self.stride
        if self.weight.shape[-1] == 1 and not self.depthwise:
            if stride > 1:  # a strided 1x1 conv reads every stride-th pixel: subsample first (2.6x faster)
                x = x[:, :, ::stride, ::stride]
            return _pointwise(x, weight, bias, 1 if shared else groups, self.in_channels)
        conv_groups = 1 if shared else groups * (self.in_channels if self.depthwise else 1)
        return F.conv2d(x, weight, bias, stride, self.padding, 1, conv_groups)


# A grouped 1x1 convolution over at most this many pixels (batch x height x width) computes (pixels, in) @ (in, out)
# rather than (out, in) @ (in, pixels), whose narrow pixel dimension wastes the CPU's vector width. Measured on
# 2 CPU cores (one thread), (out, in) @ (in, pixels) against (pixels, in) @ (in, out): at 25 pixels 320 -> 2300 /
# 10350 channels 1.06 / 5.0 -> 0.80 / 4.0 ms (the packaged model's head convolutions at batch 1: its branches
# 18.7 -> 15.3 ms); at 49 pixels (7x7 maps at batch 1) the branches of NHL-ResNet50, NHL-ConvNeXtV2 and
# PHL-lateSP ran 1.00-1.05x as long with it (its channels-last result slows the layers after it).
ROWS_MAX_PIXELS = 32


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int,
               in_channels: int) -> torch.Tensor:
    """A grouped 1x1 convolution (stride 1) as one batched matrix product with the batch folded into the
    pixels: ``(G, out, in) @ (G, in, B*H*W)``. Measured 1.1-2x faster than the (grouped) convolution on
    7x7 and 14x14 maps at batch 1 and 16 (benchmarks/cutout.py); at batch 1 the folding is free. Few pixels
    (``ROWS_MAX_PIXELS``) take the transposed product, returned channels-last."""
    b, _, h, w = x.shape
    weight = weight.view(groups, -1, in_channels)
    if b * h * w <= ROWS_MAX_PIXELS and not torch.jit.is_tracing():
        rows = x.permute(0, 2, 3, 1).reshape(b * h * w, groups, in_channels).transpose(0, 1)  # (G, B*H*W, in)
        weight = weight.transpose(1, 2)
        out = (torch.matmul(rows, weight) if bias is None  # (G, B*H*W, out)
               else torch.baddbmm(bias.view(groups, 1, -1), rows, weight))
        return out.transpose(0, 1).reshape(b, h, w, -1).permute(0, 3, 1, 2)
    cols = x.reshape(b, groups, in_channels, h * w).permute(1, 2, 0, 3).reshape(groups, in_channels, b * h * w)
    if bias is None:
        out = torch.matmul(weight, cols)  # (G, out, B*H*W)
    elif torch.jit.is_tracing():  # ONNX export: the exporter writes baddbmm as MatMul, two Muls and an Add
        out = torch.matmul(weight, cols) + bias.view(groups, -1, 1)
    else:  # the bias is the product's starting value: no pass of its own over the output
        out = torch.baddbmm(bias.view(groups, -1, 1), weight, cols)
    return out.view(-1, b, h, w).transpose(0, 1).contiguous()


class GroupedBatchNorm2d(Grouped):
    """One BatchNorm per branch, computed as a single BatchNorm over all G*C channels.

    Not folded into the convolution before it for inference (as :mod:`vision.nn.folding` does for the
    EfficientNet-Lite trunk): measured on 2 CPU cores, folding saved 0-6 % of branch time (the matrix products
    dominate) for a second copy of every branch weight.
    """

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        super().__init__(groups, channels=channels, eps=eps)
        self.bn = nn.BatchNorm2d(groups * channels, eps=eps)

    def forward(self, x: torch.Tensor, part: Part | None = None) -> torch.Tensor:
        bn = self.bn
        if part is None:
            return bn(x)
        training = bn.training or bn.running_mean is None
        if bn.training and part[0] == 0:  # the parts of one forward cover each group once; count the batch once
            bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
        return F.batch_norm(x, self.rows(bn.running_mean, part), self.rows(bn.running_var, part),
                            self.rows(bn.weight, part), self.rows(bn.bias, part), training, momentum, bn.eps)


class GroupedLayerNorm2d(Grouped):
    """LayerNorm over each branch's own channels (ConvNeXt's ``LayerNorm2d``, per branch)."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-6):
        super().__init__(groups, channels=channels, eps=eps)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(groups * channels))
        self.bias = nn.Parameter(torch.zeros(groups * channels))

    def forward(self, x: torch.Tensor, part: Part | None = None) -> torch.Tensor:
        v = self.normalized(x, self.part_groups(part))
        return v * self.rows(self.weight, part)[:, None, None] + self.rows(self.bias, part)[:, None, None]

    def normalized(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        """``x`` normalised over each of its ``groups`` groups of channels, before the affine."""
        b, _, h, w = x.shape
        v = x.view(b, groups, -1, h, w)
        centered = v - v.mean(2, keepdim=True)
        # the variance as the mean of squares, not ``Tensor.var``: its kernel reduces over a middle dimension
        # 5-20x slower on CPU (measured on (16, 27, 24 or 128, 7, 7) maps); two-pass, so just as accurate
        var = centered.square().mean(2, keepdim=True)
        return (centered * torch.rsqrt(var + self.eps)).view(b, -1, h, w)


class GroupedGRN(Grouped):
    """ConvNeXtV2 global response normalisation, the channel mean taken within each branch."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-6):
        super().__init__(groups, channels=channels, eps=eps)
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(groups * channels))
        self.bias = nn.Parameter(torch.zeros(groups * channels))

    def forward(self, x: torch.Tensor, part: Part | None = None) -> torch.Tensor:
        b = x.shape[0]
        gx = x.norm(p=2, dim=(2, 3)).view(b, self.part_groups(part), -1)
        nx = (gx / (gx.mean(2, keepdim=True) + self.eps)).view(b, -1, 1, 1)
        weight, bias = self.rows(self.weight, part), self.rows(self.bias, part)
        # x + weight * (x * nx) + bias as one pass over x: x * (1 + weight * nx) + bias (the factor is per image and
        # channel); measured 7.0 -> 0.8 ms on a (16, 27 * 48, 7, 7) chunk of NHL-ConvNeXtV2 leaves
        return torch.addcmul(bias[:, None, None], x, 1 + weight[:, None, None] * nx)


class GroupedLogitHead(Grouped):
    """Global average pooling and one logit per branch."""

    def __init__(self, groups: int, channels: int):
        super().__init__(groups, channels=channels)
        self.weight = nn.Parameter(torch.empty(groups, channels))
        self.bias = nn.Parameter(torch.zeros(groups))
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(channels))

    def forward(self, pooled: torch.Tensor, runs: Sequence[tuple[int, int, int]] | None = None) -> torch.Tensor:
        """``pooled``: ``(B, G, C)`` -> logits ``(B, G)``. With ``runs``, ``(start, stop, parent)`` covering the
        groups in order, ``pooled`` is the parent level's ``(B, P, C)`` and groups ``start:stop`` read row
        ``parent``: one matrix product per run instead of a ``(B, G, C)`` copy of the parents' rows (measured on
        the default model, 30 parents of 1000 leaves of 1150 channels, batch 16: 63 -> 3 ms)."""
        if runs is not None:
            return torch.cat([torch.addmm(self.bias[start:stop], pooled[:, parent], self.weight[start:stop].t())
                              for start, stop, parent in runs], 1)
        return torch.einsum("bgc,gc->bg", pooled, self.weight) + self.bias
