"""Grouped 1x1 convolutions: both matrix-product layouts equal the grouped convolution, with gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vision.nn import grouped
from vision.nn.grouped import GroupedConv2d


def _reference(conv: GroupedConv2d, x: torch.Tensor, shared: bool) -> torch.Tensor:
    """The same convolution as torch's grouped convolution on one copy of the input per group."""
    if shared:
        x = x.repeat(1, conv.groups, 1, 1)
    return F.conv2d(x, conv.weight, conv.bias, groups=conv.groups)


@pytest.mark.parametrize("batch, size", [(1, 4), (2, 3), (1, 8), (3, 6)])  # 16 / 18 pixels, then 64 / 108
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_layouts_equal_the_grouped_convolution(batch, size, shared, bias):
    torch.manual_seed(0)
    conv = GroupedConv2d(3, 5, 7, 1, bias=bias)
    if bias:
        torch.nn.init.normal_(conv.bias)
    x = torch.randn(batch, 5 if shared else 15, size, size, requires_grad=True)
    out = conv(x, shared=shared)
    expected = _reference(conv, x, shared)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    few_pixels = batch * size * size <= grouped.ROWS_MAX_PIXELS
    assert out.is_contiguous(memory_format=torch.channels_last) == few_pixels  # the layout says which path ran
    assert out.is_contiguous() != few_pixels
    grads = torch.autograd.grad(out.square().sum(), [x, conv.weight])
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, conv.weight])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


def test_pointwise_layouts_agree_on_a_part_of_the_groups(monkeypatch):
    torch.manual_seed(1)
    conv = GroupedConv2d(4, 6, 5, 1, bias=True)
    x = torch.randn(1, 6, 5, 5)
    with torch.no_grad():
        rows = conv(x, shared=True, part=(1, 3))
        monkeypatch.setattr(grouped, "ROWS_MAX_PIXELS", 0)
        columns = conv(x, shared=True, part=(1, 3))
    torch.testing.assert_close(rows, columns, atol=1e-5, rtol=1e-5)
    assert rows.shape == (1, 10, 5, 5) and not torch.equal(rows, torch.zeros_like(rows))
