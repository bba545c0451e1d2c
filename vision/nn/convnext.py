"""Faster inference for a ConvNeXt / ConvNeXtV2 trunk: timm's own modules and parameters, run another way.

timm's ConvNeXt block permutes its map to channels-last and back around the MLP, and makes six full passes
over the 4x-wide hidden map (fc1's bias, GELU, GRN's norm, product, affine and sum) before fc2. At batch 16 a
block's hidden map is up to 77 MB: fresh maps above glibc's mmap threshold page-fault on every write, and 30 %
of the trunk's time was spent in the kernel. :class:`ConvNeXtInference` computes the same function with

- the feature map channels-last (NHWC) from stem to split point: no permutes or copies around the MLP;
- GRN as ``x * (1 + weight * Nx) + bias``: one in-place pass over the hidden map, its bias passed through fc2, and
  the residual as fc2's starting value: the hidden map is written by fc1, GELU'd and scaled in place, summed once
  for GRN's norm and read by fc2 (scaling fc2's (4C, C) weights per image instead measured no faster, and
  slower on 7x7 maps); the layer scale (ConvNeXt V1) goes into fc2's weights;
- the MLP run on a few images at a time (``MLP_CHUNK_BYTES`` of hidden map), so it stays cache-sized and is
  reused by the allocator instead of page-faulting;
- GRN's spatial L2 norm as a sum of squares (float32 maps; half precision takes torch's vector norm, which
  accumulates in float32): torch's vector norm over a middle dimension is ~10x slower on CPU.

It keeps no copy of any weight: what it derives from them (fc2's bias, the layer-scaled fc2 weights of V1) is
computed per call from the current parameters, a small cost next to the maps. Measured on 2 CPU cores, one
thread, ConvNeXtV2-tiny cut at ``stages.2`` (224 px), timm's forward against this path interleaved (two runs):
127 -> 103-108 ms at batch 1 and 2630 -> 1520 ms at batch 16. The results differ from timm's by float rounding
(about 1e-6 of the output's scale). It runs in eval mode where no gradient can reach the trunk (see
``vision.nn.trunk.Trunk``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# On the CPU the MLP runs on as many images at once as keep its hidden map under this many bytes (at least one
# image); on an accelerator on the whole batch.
# Measured at batch 16 (ConvNeXtV2-tiny, stages 0-2): one image or 4-16 MB chunks within noise (1.78-1.87 s),
# the whole batch at once 2.7 s.
MLP_CHUNK_BYTES = 4 * 2**20


class ConvNeXtInference:
    """Runs a timm ConvNeXt's stem and its first ``stages`` stages, returning the last one's NCHW features.

    Build it with :meth:`for_body`, which declines (None) any ConvNeXt it does not cover exactly.
    """

    def __init__(self, body: nn.Module, stages: int):
        self.body = body
        self.stages = stages

    @classmethod
    def for_body(cls, body: nn.Module, index: int) -> ConvNeXtInference | None:
        """The inference path of a timm ConvNeXt cut after stage ``index``, or None when one of its parts is not
        the standard one this path computes (another stem, dilation, a GELU approximation, an MLP norm, ...)."""
        from timm.layers import GELU, LayerNorm, LayerNorm2d
        from timm.layers.grn import GlobalResponseNorm
        from timm.models.convnext import ConvNeXtBlock

        def is_layer_norm(module: nn.Module, kind: type) -> bool:
            return type(module) is kind and module.elementwise_affine and module.bias is not None

        def is_gelu(module: nn.Module) -> bool:
            return type(module) is GELU or (type(module) is nn.GELU and module.approximate == "none")

        def plain_conv(module: nn.Module, groups: int | None = None) -> bool:
            return (type(module) is nn.Conv2d and module.bias is not None and module.dilation == (1, 1)
                    and module.padding_mode == "zeros" and (groups is None or module.groups == groups))

        def is_linear(module: nn.Module) -> bool:  # a Linear, or a 1x1 convolution (the "conv MLP" variants)
            return module.bias is not None and (type(module) is nn.Linear or (
                plain_conv(module, 1) and module.kernel_size == (1, 1) and module.stride == (1, 1)))

        stem = body.stem
        if not (isinstance(stem, nn.Sequential) and len(stem) == 2 and plain_conv(stem[0], 1)
                and stem[0].padding == (0, 0) and is_layer_norm(stem[1], LayerNorm2d)):
            return None
        for stage in body.stages[: index + 1]:
            down = stage.downsample
            if not (isinstance(down, nn.Identity) or (isinstance(down, nn.Sequential) and len(down) == 2
                                                      and is_layer_norm(down[0], LayerNorm2d)
                                                      and plain_conv(down[1], 1))):
                return None
            for block in stage.blocks:
                mlp = block.mlp if type(block) is ConvNeXtBlock else None
                grn = getattr(mlp, "grn", None)
                if not (mlp is not None and is_layer_norm(block.norm, LayerNorm2d if block.use_conv_mlp else LayerNorm)
                        and plain_conv(block.conv_dw, block.conv_dw.in_channels)
                        and isinstance(block.shortcut, nn.Identity) and is_gelu(mlp.act)
                        and isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity)
                        and all(is_linear(fc) for fc in (mlp.fc1, mlp.fc2))
                        and (grn is None or type(grn) is GlobalResponseNorm)):
                    return None
        return cls(body, index + 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        body = self.body
        stem_conv, stem_norm = body.stem
        x = _layer_norm(stem_conv(x.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1), stem_norm)
        for stage in body.stages[: self.stages]:
            if not isinstance(stage.downsample, nn.Identity):
                norm, conv = stage.downsample
                x = conv(_layer_norm(x, norm).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            for block in stage.blocks:
                x = _block(block, x)
        return x.permute(0, 3, 1, 2).contiguous()


def _grn_factor(hidden: torch.Tensor, eps: float) -> torch.Tensor:
    """GRN's ``Nx`` of ``hidden`` ``(n, pixels, 4C)``: each channel's spatial L2 norm over the channels' mean,
    ``(n, 1, 4C)``. A sum of squares in half precision would overflow past a norm of 256."""
    if hidden.dtype in (torch.float32, torch.float64):
        norms = hidden.square().sum(1, keepdim=True).sqrt_()
    else:
        norms = torch.linalg.vector_norm(hidden, dim=1, keepdim=True, dtype=torch.float32)
    return (norms / (norms.mean(2, keepdim=True) + eps)).to(hidden.dtype)


def _layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """A LayerNorm over the channels of an NHWC map."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One ConvNeXt block on an NHWC map ``x``: ``x + gamma * fc2(GRN(GELU(fc1(norm(conv_dw(x))))))``."""
    b, h, w, c = x.shape
    fc1, fc2, grn, gamma = block.mlp.fc1, block.mlp.fc2, getattr(block.mlp, "grn", None), block.gamma
    w1 = fc1.weight.flatten(1).t()  # (C, 4C): a Linear's or a 1x1 convolution's weight, as a view
    w2 = fc2.weight.flatten(1).t()  # (4C, C)
    bias = fc2.bias if grn is None else torch.addmv(fc2.bias, w2.t(), grn.bias)  # GRN's bias goes through fc2
    if gamma is not None:  # the layer scale, on fc2's outputs
        w2, bias = w2 * gamma, bias * gamma
    y = block.conv_dw(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # oneDNN keeps channels-last: NHWC again
    y = _layer_norm(y, block.norm)
    out = torch.empty_like(x)
    pixels = h * w
    images = b if x.device.type != "cpu" else max(1, MLP_CHUNK_BYTES // (pixels * w1.shape[1] * x.element_size()))
    for start in range(0, b, images):
        stop = min(b, start + images)
        n = stop - start
        hidden = torch.addmm(fc1.bias, y[start:stop].reshape(n * pixels, c), w1)
        torch.ops.aten.gelu_(hidden)
        if grn is not None:  # x + weight * x * Nx + bias = x * (1 + weight * Nx) + bias, the bias through fc2
            hidden = hidden.view(n, pixels, -1)
            hidden.mul_(1 + grn.weight * _grn_factor(hidden, grn.eps))
        torch.addmm(x[start:stop].reshape(n * pixels, c), hidden.view(n * pixels, -1), w2,
                    out=out[start:stop].view(n * pixels, c))
    return out.add_(bias)
