"""Dynamic int8 quantisation of activations, as the TFLite runtime (XNNPACK) runs YAMNet's int8-weight layers.

The TF-Hub TFLite export of YAMNet stores the weights of its matrix products (DFT, mel, pointwise convolutions,
classifier) as int8 with float activations. Google's runtime quantises each activation row to int8 on the fly
(XNNPACK's "qd8": asymmetric, one scale and zero point per row), multiplies in integers and rescales. Reproducing
that arithmetic is what makes the PyTorch scores match the runtime's; plain float products on the dequantised
weights differ from it by up to 0.29 in a score.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

INT8_MIN, INT8_MAX = -128.0, 127.0


def quantize_rows(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(q - zero_point, scale)` of `x` quantised to int8 along `dim`, one scale per slice (XNNPACK qd8).

    The range always includes 0; the multiplier `255 / range` and the scale `1 / multiplier` are rounded in
    float32 exactly as `xnn_f32_qd8_asymmetric_quantization_params` rounds them, the zero point is nudged to an
    integer and values round half to even. The first result holds integers in [-255, 255] as floats.
    """
    low = x.amin(dim=dim, keepdim=True).clamp(max=0.0)
    high = x.amax(dim=dim, keepdim=True).clamp(min=0.0)
    span = high - low
    flat = span == 0
    multiplier = torch.where(flat, 1.0, torch.full_like(span, INT8_MAX - INT8_MIN) / torch.where(flat, 1.0, span))
    scale = torch.ones_like(multiplier) / multiplier
    multiplier = torch.ones_like(scale) / scale  # the runtime quantises with 1 / scale, not with the multiplier
    low_error, high_error = INT8_MIN + low * multiplier, INT8_MAX + high * multiplier
    zero_point = torch.where(low_error + high_error > 0, INT8_MIN - low * multiplier, INT8_MAX - high * multiplier)
    zero_point = torch.round(zero_point.clamp(INT8_MIN, INT8_MAX))
    # round(x * multiplier) + zero_point saturated to int8, minus zero_point again: one clamp of the integers
    return torch.round(x * multiplier).clamp_(INT8_MIN - zero_point, INT8_MAX - zero_point), scale


def int8_linear(
    x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`x @ (weight * weight_scale).T + bias` as the runtime computes it with int8 `weight` values (held as floats)
    and `x` quantised per row of its last dimension; `weight_scale` is a scalar or one scale per output.

    The integer products are exact in float32 (|sums| < 2**24 here). The runtime then rounds `sum * row_scale`
    to float32 and applies the weight scale and bias in one fused multiply-add, as `torch.addcmul` does on CPUs
    with FMA: a separate multiply and add differs in the last bit, and such bits flip later roundings.
    """
    values, scale = quantize_rows(x, dim=-1)
    out = F.linear(values, weight) * scale
    return out * weight_scale if bias is None else torch.addcmul(bias, out, weight_scale)
