"""Branch blocks and their registry: a block type is one class registered under a name.

A block runs G sibling branches at once (grouped ops, see :mod:`vision.nn.grouped`) and takes the
top-down gain of each branch at its middle layer (the paper's "conv 5b"). A new block type is one
class with ``default_hidden`` and a ``@register_block("name")`` line; configs name it by ``block``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .folding import DerivedTensors, folding_applies
from .grouped import (
    Grouped,
    GroupedBatchNorm2d,
    GroupedConv2d,
    GroupedGRN,
    GroupedLayerNorm2d,
    Part,
    add_residual,
    apply_gain,
    expand_shared,
)

_BLOCKS: dict[str, type[Block]] = {}


def register_block(name: str) -> Callable[[type[Block]], type[Block]]:
    """Class decorator: make a :class:`Block` subclass available as ``SeqParConfig(block=name)``."""
    def register(cls: type[Block]) -> type[Block]:
        if name in _BLOCKS:
            raise ValueError(f"block type {name!r} is already registered ({_BLOCKS[name].__name__})")
        _BLOCKS[name] = cls
        return cls
    return register


def block_types() -> tuple[str, ...]:
    """The registered block type names."""
    return tuple(_BLOCKS)


def block_class(name: str) -> type[Block]:
    """The block class registered as ``name``; ValueError for an unknown name."""
    if name not in _BLOCKS:
        raise ValueError(f"unknown block type {name!r}; expected one of {block_types()}")
    return _BLOCKS[name]


def make_block(kind: str, **kwargs: Any) -> Block:
    """Build a grouped block by its registered type name."""
    return block_class(kind)(**kwargs)


def strided_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """The ``(height, width)`` of a ``height x width`` map after a convolution of this stride ("same" padding)."""
    return -(-height // stride), -(-width // stride)


class Block(Grouped):
    """A grouped residual block; ``forward(x, shared, gain, part, prepared)``, the gain applied at its middle layer.

    ``part=(start, stop)`` runs only those groups (see :mod:`vision.nn.grouped`); ``gain`` is then theirs.
    ``prepared`` is what :meth:`prepare_shared` returned for the shared map ``x``: a level that runs its siblings
    in several chunks computes it once per parent map instead of once per chunk.
    """

    @staticmethod
    def default_hidden(in_channels: int, out_channels: int) -> int:
        """The block type's usual inner width for these in/out widths."""
        raise NotImplementedError

    def prepare_shared(self, x: torch.Tensor) -> torch.Tensor | None:
        """Work on a shared parent map that does not depend on the groups reading it (None: the block has none)."""
        return None

    @property
    def stride(self) -> int:
        """The block's stride: its output is this many times smaller than its input, each way."""
        return self._kwargs["stride"]

    def widest_map(self, height: int, width: int) -> int:
        """Elements (per image and group) of the largest map this block makes from a ``height x width`` input: its
        hidden map at the input's resolution (the stride is in its middle layer), or its output."""
        kw = self._kwargs
        output = math.prod(strided_size(height, width, self.stride))
        return max(kw["hidden"] * height * width, kw["out_channels"] * output)

    def forward(self, x: torch.Tensor, shared: bool = False, gain: torch.Tensor | None = None,
                part: Part | None = None, prepared: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


@register_block("bottleneck")
class BottleneckBlock(Block):
    """ResNet bottleneck (1x1 -> 3x3 -> 1x1, x4-style projection shortcut), per branch."""

    @staticmethod
    def default_hidden(in_channels: int, out_channels: int) -> int:
        return max(1, out_channels // 4)

    def __init__(self, groups: int, in_channels: int, hidden: int, out_channels: int, stride: int = 1):
        super().__init__(groups, in_channels=in_channels, hidden=hidden, out_channels=out_channels, stride=stride)
        self.conv1 = GroupedConv2d(groups, in_channels, hidden, 1)
        self.bn1 = GroupedBatchNorm2d(groups, hidden)
        self.conv2 = GroupedConv2d(groups, hidden, hidden, 3, stride=stride)
        self.bn2 = GroupedBatchNorm2d(groups, hidden)
        self.conv3 = GroupedConv2d(groups, hidden, out_channels, 1)
        self.bn3 = GroupedBatchNorm2d(groups, out_channels)
        nn.init.zeros_(self.bn3.bn.weight)
        self.has_projection = stride != 1 or in_channels != out_channels
        if self.has_projection:
            self.down_conv = GroupedConv2d(groups, in_channels, out_channels, 1, stride=stride)
            self.down_bn = GroupedBatchNorm2d(groups, out_channels)

    def forward(self, x: torch.Tensor, shared: bool = False, gain: torch.Tensor | None = None,
                part: Part | None = None, prepared: torch.Tensor | None = None) -> torch.Tensor:
        groups = self.part_groups(part)
        out = F.relu(self.bn1(self.conv1(x, shared, part), part))
        out = F.relu(self.bn2(self.conv2(out, part=part), part))
        out = self.bn3(self.conv3(apply_gain(out, gain, groups), part=part), part)
        if self.has_projection:
            return F.relu(out + self.down_bn(self.down_conv(x, shared, part), part))
        return F.relu(add_residual(out, x, groups, shared))


@register_block("convnext")
class ConvNeXtBlock(Block):
    """ConvNeXtV2 block (7x7 depthwise -> LN -> 1x1 -> GELU -> GRN -> 1x1, residual), per branch.

    A block whose input width or resolution differs starts with ConvNeXt's downsampling layer
    (LayerNorm + strided conv).
    """

    @staticmethod
    def default_hidden(in_channels: int, out_channels: int) -> int:
        return 4 * out_channels

    def __init__(self, groups: int, in_channels: int, hidden: int, out_channels: int, stride: int = 1):
        super().__init__(groups, in_channels=in_channels, hidden=hidden, out_channels=out_channels, stride=stride)
        self.has_projection = stride != 1 or in_channels != out_channels
        if self.has_projection:
            self.down_norm = GroupedLayerNorm2d(groups, in_channels)
            self.down_conv = GroupedConv2d(groups, in_channels, out_channels, stride, stride=stride, bias=True)
        self.conv_dw = GroupedConv2d(groups, out_channels, out_channels, 7, depthwise=True, bias=True)
        self.norm = GroupedLayerNorm2d(groups, out_channels)
        self.fc1 = GroupedConv2d(groups, out_channels, hidden, 1, bias=True)
        self.grn = GroupedGRN(groups, hidden)
        self.fc2 = GroupedConv2d(groups, hidden, out_channels, 1, bias=True)
        for conv in (self.conv_dw, self.fc1, self.fc2):
            nn.init.trunc_normal_(conv.weight, std=0.02)
        self._folded_projections: dict[Part | None, DerivedTensors] = {}  # see _project_shared

    def forward(self, x: torch.Tensor, shared: bool = False, gain: torch.Tensor | None = None,
                part: Part | None = None, prepared: torch.Tensor | None = None) -> torch.Tensor:
        groups = self.part_groups(part)
        if shared and self._projects_unpadded:
            x = self._project_shared(self.prepare_shared(x) if prepared is None else prepared, part)
        else:
            if shared:
                x = expand_shared(x, groups)
            if self.has_projection:
                x = self.down_conv(self.down_norm(x, part), part=part)
        out = self.grn(F.gelu(self.fc1(self.norm(self.conv_dw(x, part=part), part), part=part)), part)
        return x + self.fc2(apply_gain(out, gain, groups), part=part)

    @property
    def _projects_unpadded(self) -> bool:
        return self.has_projection and self.down_conv.padding == 0

    def widest_map(self, height: int, width: int) -> int:
        """The hidden map, at the output's resolution (the projection strides)."""
        kw = self._kwargs
        return max(kw["hidden"], kw["out_channels"]) * math.prod(strided_size(height, width, self.stride))

    def prepare_shared(self, x: torch.Tensor) -> torch.Tensor | None:
        """A shared map's LayerNorm before the affine (see :meth:`_project_shared`): the same for every group, so a
        level computes it once per parent map. Measured on 2 CPU cores (one thread), NHL-ConvNeXtV2-tiny with 1000
        classes at batch 16, whose 32 superclasses run one per chunk on the trunk's (16, 384, 14, 14) map: branches
        639 -> 538 ms."""
        return self.down_norm.normalized(x, 1) if self._projects_unpadded else None

    def _project_shared(self, normalized: torch.Tensor, part: Part | None) -> torch.Tensor:
        """``down_conv(down_norm(x))`` of every group's copy of a shared map ``x``, without the copies: ``x``
        ``normalized`` once (:meth:`prepare_shared`), each group's LayerNorm affine folded into its convolution. Exact
        (up to float rounding) for an unpadded convolution, as ConvNeXt's kernel = stride projection is: every pixel
        it reads went through the affine (``forward`` checks the padding). Measured on 2 CPU cores (one thread), the
        branches of NHL-ConvNeXtV2-tiny with 1000 classes (every leaf projects its parent's 128 channels to 24):
        168 -> 106 ms at batch 1, 2379 -> 1363 ms at batch 16.

        In inference (eval mode, no autograd) the folded weights are kept per chunk until a parameter changes: a
        second copy of the projection weights (37 MB for those 1000 classes), for 92 -> 54 ms of their branches
        at batch 1, where the superclass level folded 6.3 M weights per call."""
        norm, conv = self.down_norm, self.down_conv
        if not folding_applies(self):
            weights = self._fold_projection(part)
        else:
            cache = self._folded_projections.get(part)
            if cache is None:
                cache = self._folded_projections.setdefault(part, DerivedTensors())
            sources = (norm.rows(norm.weight, part), norm.rows(norm.bias, part), conv.rows(conv.weight, part),
                       conv.rows(conv.bias, part))
            weights = cache.derive(sources, lambda: self._fold_projection(part)) or self._fold_projection(part)
        return conv(normalized, shared=True, part=part, weights=weights)

    def _fold_projection(self, part: Part | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(weight, bias)`` of groups ``part``'s ``down_conv`` with ``down_norm``'s affine folded in."""
        norm, conv = self.down_norm, self.down_conv
        groups, channels = norm.part_groups(part), conv.in_channels
        scale = norm.rows(norm.weight, part).view(groups, 1, channels, 1, 1)
        shift = norm.rows(norm.bias, part).view(groups, 1, channels, 1, 1)
        weight = conv.rows(conv.weight, part)
        weight = weight.view(groups, -1, *weight.shape[1:])  # (G, out, C, k, k)
        bias = conv.rows(conv.bias, part) + (weight * shift).sum((2, 3, 4)).flatten()
        return (weight * scale).flatten(0, 1), bias

    def _apply(self, fn: Any, recurse: bool = True) -> ConvNeXtBlock:
        self._folded_projections.clear()  # moved or cast: fold again from the new tensors
        return super()._apply(fn, recurse)


@register_block("mbconv")
class MBConvBlock(Block):
    """EfficientNet-Lite inverted residual (1x1 expand -> depthwise -> 1x1 project, ReLU6), per branch."""

    @staticmethod
    def default_hidden(in_channels: int, out_channels: int) -> int:
        return 6 * in_channels

    def __init__(self, groups: int, in_channels: int, hidden: int, out_channels: int, stride: int = 1,
                 kernel_size: int = 5):
        super().__init__(groups, in_channels=in_channels, hidden=hidden, out_channels=out_channels, stride=stride,
                         kernel_size=kernel_size)
        self.conv_pw = GroupedConv2d(groups, in_channels, hidden, 1)
        self.bn1 = GroupedBatchNorm2d(groups, hidden, eps=1e-3)
        self.conv_dw = GroupedConv2d(groups, hidden, hidden, kernel_size, stride=stride, depthwise=True)
        self.bn2 = GroupedBatchNorm2d(groups, hidden, eps=1e-3)
        self.conv_pwl = GroupedConv2d(groups, hidden, out_channels, 1)
        self.bn3 = GroupedBatchNorm2d(groups, out_channels, eps=1e-3)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor, shared: bool = False, gain: torch.Tensor | None = None,
                part: Part | None = None, prepared: torch.Tensor | None = None) -> torch.Tensor:
        groups = self.part_groups(part)
        out = F.relu6(self.bn1(self.conv_pw(x, shared, part), part))
        out = F.relu6(self.bn2(self.conv_dw(out, part=part), part))
        out = self.bn3(self.conv_pwl(apply_gain(out, gain, groups), part=part), part)
        return add_residual(out, x, groups, shared) if self.has_skip else out


@register_block("convhead")
class ConvHeadBlock(Block):
    """EfficientNet's head conv (1x1 conv -> BN -> ReLU6), per branch: no residual, the gain on its output.

    ``hidden`` is unused (the block has one layer); a branch of this type is a slice of the channels of
    a pretrained network's ``conv_head``, as in the packaged default model.
    """

    @staticmethod
    def default_hidden(in_channels: int, out_channels: int) -> int:
        return out_channels

    def __init__(self, groups: int, in_channels: int, hidden: int, out_channels: int, stride: int = 1):
        super().__init__(groups, in_channels=in_channels, hidden=hidden, out_channels=out_channels, stride=stride)
        self.conv = GroupedConv2d(groups, in_channels, out_channels, 1, stride=stride)
        self.bn = GroupedBatchNorm2d(groups, out_channels, eps=1e-3)

    def widest_map(self, height: int, width: int) -> int:
        """Its one map, the output (``hidden`` is unused)."""
        return self._kwargs["out_channels"] * math.prod(strided_size(height, width, self.stride))

    def forward(self, x: torch.Tensor, shared: bool = False, gain: torch.Tensor | None = None,
                part: Part | None = None, prepared: torch.Tensor | None = None) -> torch.Tensor:
        return apply_gain(F.relu6(self.bn(self.conv(x, shared, part), part)), gain, self.part_groups(part))
