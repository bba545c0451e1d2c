"""BatchNorm folded into the convolution before it, for inference.

In eval mode a BatchNorm is an affine map per channel, so ``bn(conv(x, W) + b)`` equals one convolution
with ``W * s`` and ``(b - mean) * s + beta`` (``s = gamma / sqrt(var + eps)``): one pass over the feature map
fewer per layer. The folded tensors are computed once and kept until any tensor they come from changes
(its version counter or storage: an optimizer step, ``load_state_dict``, ``.to()``), so the module's own
weights, state dict and training are untouched. Writes through ``.data`` bump no version counter and go unseen,
as they do for autograd. Folding applies only in eval mode without autograd (``torch.no_grad`` /
``torch.inference_mode``): with gradients, BatchNorm runs as is, so they reach its parameters. Results differ from
the unfolded computation by float rounding (about 1e-6 relative per layer; over the 20-40 layers of a trunk,
up to about 1e-4 of the output's scale).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

import torch
from torch import nn

Folded = tuple[torch.Tensor, torch.Tensor]  # (weight, bias) of the folded convolution
T = TypeVar("T")


def folding_applies(module: nn.Module) -> bool:
    """Whether ``module`` runs with folded BatchNorms now: eval mode and no autograd."""
    return not module.training and not torch.is_grad_enabled()


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> Folded:
    """The convolution ``(weight, bias)`` followed by ``bn`` in eval mode, as one convolution (computed in at least
    float32, returned in the weight's dtype: a half-precision model keeps BatchNorm's float32 accuracy)."""
    dtype = torch.promote_types(weight.dtype, torch.float32)
    scale = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    shift = -bn.running_mean.to(dtype) if bias is None else bias.to(dtype) - bn.running_mean.to(dtype)
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    shift = shift * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(dtype)
    return (weight.to(dtype) * scale.view(-1, *[1] * (weight.ndim - 1))).to(weight.dtype), shift.to(weight.dtype)


class DerivedTensors(Generic[T]):
    """Values computed from some source tensors, recomputed when one of them changes (its version counter or
    storage). One entry, replaced atomically, so threads share it safely (a race computes it twice)."""

    def __init__(self) -> None:
        # (key, value, the sources' storages: held so that their addresses in the key cannot be reused)
        self._entry: tuple[tuple, T, tuple] | None = None

    def clear(self) -> None:
        """Forget the value (its sources moved to another device or dtype)."""
        self._entry = None

    def derive(self, sources: Sequence[torch.Tensor | None], compute: Callable[[], T],
               tag: Hashable = None) -> T | None:
        """``compute()``'s value for the current ``sources`` (None entries ignored) and ``tag``, computed without
        autograd; None where ``sources`` hold tensors made under ``torch.inference_mode`` (they carry no version
        counter to tell a change by)."""
        tensors = [t for t in sources if t is not None]
        try:
            key = (tag, *((t.data_ptr(), t._version) for t in tensors))
        except RuntimeError:  # an inference tensor
            return None
        entry = self._entry
        if entry is None or entry[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable in any later mode
                entry = (key, compute(), tuple(t.untyped_storage() for t in tensors))
            self._entry = entry
        return entry[1]


class FoldCache(DerivedTensors[Folded]):
    """The folded ``(weight, bias)`` of one convolution + BatchNorm pair, recomputed when one of their tensors
    changes."""

    def get(self, weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d,
            memory_format: torch.memory_format = torch.contiguous_format) -> Folded | None:
        """The folded tensors (the weight in ``memory_format``), or None where folding is impossible: a
        BatchNorm without running statistics, or tensors made under ``torch.inference_mode``."""
        if bn.running_mean is None or bn.running_var is None:
            return None

        def fold() -> Folded:
            folded_weight, folded_bias = fold_batchnorm(weight, bias, bn)
            return folded_weight.contiguous(memory_format=memory_format), folded_bias

        sources = (weight, bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        return self.derive(sources, fold, memory_format)
