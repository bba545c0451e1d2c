"""The ConvNeXt trunk's inference path computes timm's function, and runs exactly when no gradient can reach it."""

from __future__ import annotations

import pytest
import torch

import vision.nn.convnext as convnext
from vision.nn.convnext import ConvNeXtInference
from vision.nn.trunk import Trunk

# (backbone, split point): V2 with GRN and a Linear MLP; V1 with layer scale; the conv-MLP (1x1 conv) variants
CASES = [("convnextv2_tiny", "stages.1"), ("convnext_tiny", "stages.0"), ("convnextv2_atto", "stages.3"),
         ("convnext_atto", "stages.2")]


def _trunk(backbone: str, split_point: str) -> Trunk:
    """An eval-mode trunk with every parameter moved off its init (GRN starts at zero, LayerNorm at identity)."""
    torch.manual_seed(0)
    trunk = Trunk(backbone, split_point).eval()
    with torch.no_grad():
        for p in trunk.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return trunk


def _timm_forward(trunk: Trunk, x: torch.Tensor) -> torch.Tensor:
    return trunk.body.forward_intermediates(x, indices=[trunk.index], intermediates_only=True, stop_early=True)[0]


def _assert_close_to(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape and actual.is_contiguous()
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-6 * max(scale, 1.0))


@pytest.mark.parametrize("backbone,split_point", CASES)
def test_inference_path_equals_timm_forward(backbone, split_point):
    trunk = _trunk(backbone, split_point)
    assert trunk.inference is not None
    x = torch.randn(3, 3, 97, 97)
    with torch.no_grad():
        _assert_close_to(trunk(x), _timm_forward(trunk, x))


@pytest.mark.parametrize("chunk_bytes", [1, 2**40])
def test_image_chunks_of_the_mlp_do_not_change_the_result(monkeypatch, chunk_bytes):
    trunk = _trunk("convnextv2_atto", "stages.2")
    x = torch.randn(5, 3, 64, 64)
    monkeypatch.setattr(convnext, "MLP_CHUNK_BYTES", chunk_bytes)  # one image at a time / the whole batch
    with torch.inference_mode():
        _assert_close_to(trunk(x), _timm_forward(trunk, x))


def _route(trunk: Trunk, x: torch.Tensor) -> str:
    """Which path ``trunk(x)`` takes: "inference" or "timm"."""
    calls = []
    inference = trunk.inference
    trunk.inference = lambda v: calls.append(1) or inference(v)
    try:
        trunk(x)
    finally:
        trunk.inference = inference
    return "inference" if calls else "timm"


def test_the_inference_path_runs_only_where_no_gradient_can_reach_the_trunk():
    trunk = _trunk("convnextv2_atto", "stages.1")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert _route(trunk, x) == "inference"
    with torch.inference_mode():
        assert _route(trunk, x) == "inference"
    assert _route(trunk, x) == "timm"  # autograd on and the parameters require grad
    trunk.requires_grad_(False)
    assert _route(trunk, x) == "inference"  # a frozen trunk in training
    assert _route(trunk, x.requires_grad_()) == "timm"  # gradients wanted for the images
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert _route(trunk, x.detach()) == "timm"  # autocast (evaluation with amp)
    trunk.train()
    with torch.no_grad():
        assert _route(trunk, x.detach()) == "timm"  # training mode


def test_half_precision_grn_norms_do_not_overflow():
    """GRN's spatial norm of a half-precision hidden map past 256 (its sum of squares past float16's 65504)."""
    trunk = _trunk("convnextv2_atto", "stages.0")
    with torch.no_grad():
        trunk.body.stages[0].blocks[0].mlp.fc1.weight.mul_(30)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        expected = _timm_forward(trunk, x)
        half = trunk.half()(x.half())
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), expected, rtol=0, atol=2e-2 * expected.abs().max().item())


def test_inference_follows_parameter_updates_and_casts():
    trunk = _trunk("convnextv2_atto", "stages.1")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = trunk(x)
        block = trunk.body.stages[1].blocks[0]
        block.mlp.grn.bias.add_(0.5)  # an in-place update, as an optimizer step makes
        block.norm.weight.mul_(1.5)
        after = trunk(x)
        assert not torch.allclose(before, after)
        _assert_close_to(after, _timm_forward(trunk, x))
        trunk.double()
        _assert_close_to(trunk(x.double()), _timm_forward(trunk, x.double()))


def test_unsupported_convnext_parts_keep_timm_forward():
    import timm

    body = timm.create_model("convnext_atto", pretrained=False, act_layer="gelu_tanh")
    assert ConvNeXtInference.for_body(body, 1) is None
    assert ConvNeXtInference.for_body(timm.create_model("convnext_atto", pretrained=False), 1) is not None
