"""BatchNorm folding for inference: the folded convolution equals conv + BatchNorm, and the cached folded
weights follow every change of the tensors they come from."""

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vision.nn.folding import FoldCache, fold_batchnorm, folding_applies
from vision.nn.lite import EfficientNetLite


def _conv_bn(bias: bool, affine: bool = True) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(6, 8, 3, padding=1, bias=bias), nn.BatchNorm2d(8, eps=1e-3, affine=affine)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3)
        if affine:
            bn.weight.uniform_(0.5, 2)
            bn.bias.uniform_(-1, 1)
    return conv, bn.eval()


@pytest.mark.parametrize("bias, affine", [(False, True), (True, True), (True, False)])
def test_folded_convolution_equals_convolution_then_batchnorm(bias, affine):
    conv, bn = _conv_bn(bias, affine)
    x = torch.randn(2, 6, 9, 9)
    weight, folded_bias = fold_batchnorm(conv.weight, conv.bias, bn)
    with torch.no_grad():
        torch.testing.assert_close(F.conv2d(x, weight, folded_bias, padding=1), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_the_cache_keeps_its_tensors_until_one_of_their_sources_changes():
    conv, bn = _conv_bn(bias=False)
    cache = FoldCache()
    first = cache.get(conv.weight, conv.bias, bn)
    assert cache.get(conv.weight, conv.bias, bn) is first  # computed once
    with torch.no_grad():
        conv.weight.mul_(2)  # an in-place update (an optimizer step)
    second = cache.get(conv.weight, conv.bias, bn)
    assert second is not first and torch.allclose(second[0], 2 * first[0])
    bn.load_state_dict({**bn.state_dict(), "running_var": 4 * bn.running_var})
    third = cache.get(conv.weight, conv.bias, bn)
    assert third is not second and torch.equal(third[0], fold_batchnorm(conv.weight, None, bn)[0])
    conv.double(), bn.double()  # new tensors
    assert cache.get(conv.weight, conv.bias, bn)[0].dtype == torch.float64
    channels_last = cache.get(conv.weight, conv.bias, bn, torch.channels_last)[0]
    assert channels_last.is_contiguous(memory_format=torch.channels_last)


def test_no_folding_without_running_statistics_or_version_counters():
    conv, bn = _conv_bn(bias=False)
    assert FoldCache().get(conv.weight, None, nn.BatchNorm2d(8, track_running_stats=False)) is None
    with torch.inference_mode():
        frozen = conv.weight.clone()  # an inference tensor: no version counter to tell a change by
    assert FoldCache().get(frozen, None, bn) is None


def test_folding_applies_in_eval_mode_without_autograd_only():
    _, bn = _conv_bn(bias=False)
    with torch.no_grad():
        assert folding_applies(bn) and not folding_applies(bn.train())
    assert not folding_applies(bn.eval())
    with torch.inference_mode():
        assert folding_applies(bn)


def _lite() -> EfficientNetLite:
    torch.manual_seed(0)
    net = EfficientNetLite("tf_efficientnet_lite0", "blocks.3")
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2)
    return net.eval()


def test_inference_follows_new_weights_and_training_stays_unfolded():
    net, other = _lite(), _lite()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = net(x)  # fills the fold caches
    net.load_state_dict(other.state_dict())
    with torch.no_grad():
        after = net(x)
    with torch.enable_grad():
        exact = other(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, exact.detach(), rtol=1e-4, atol=1e-4 * exact.abs().max().item())
    net.train()
    with torch.no_grad():  # training mode never folds: without autograd it computes what it computes with it
        no_autograd = net(x)
    with torch.enable_grad():
        assert torch.equal(no_autograd, net(x))


def test_threads_share_the_fold_caches():
    net, x = _lite(), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
    fresh = _lite()
    results: list[torch.Tensor] = []

    def run() -> None:
        with torch.no_grad():
            results.append(fresh(x))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(torch.equal(r, expected) for r in results)


def test_half_precision_weights_fold_in_float32():
    conv, bn = _conv_bn(bias=True)
    half_conv, half_bn = copy.deepcopy(conv).bfloat16(), copy.deepcopy(bn).bfloat16()
    weight, bias = fold_batchnorm(half_conv.weight, half_conv.bias, half_bn)
    weight32, bias32 = fold_batchnorm(half_conv.weight.float(), half_conv.bias.float(), copy.deepcopy(half_bn).float())
    assert weight.dtype == bias.dtype == torch.bfloat16
    assert torch.equal(weight, weight32.bfloat16()) and torch.equal(bias, bias32.bfloat16())



@pytest.mark.parametrize("part", [None, (1, 3)])
def test_convnext_shared_projection_keeps_its_folded_weights_until_a_parameter_changes(part):
    """A ConvNeXt branch block on a shared parent map folds each group's LayerNorm affine into its projection and,
    in inference, keeps the folded weights per chunk: they must follow every update of the parameters."""
    from vision.nn.blocks import ConvNeXtBlock
    from vision.nn.grouped import expand_shared

    torch.manual_seed(0)
    block = ConvNeXtBlock(groups=3, in_channels=8, hidden=16, out_channels=4).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.3 * torch.randn_like(p))
    groups = 3 if part is None else part[1] - part[0]

    @torch.no_grad()
    def check(x: torch.Tensor) -> None:  # against every group's own copy of x, normalised and projected
        expected = block(expand_shared(x, groups), shared=False, part=part)
        torch.testing.assert_close(block(x, shared=True, part=part), expected, rtol=1e-5, atol=1e-5)

    x = torch.randn(2, 8, 5, 5)
    check(x)
    with torch.no_grad():  # in-place updates, as optimizer steps make
        block.down_norm.weight.mul_(1.7)
    check(x)
    with torch.no_grad():
        block.down_conv.bias.add_(0.5)
    check(x)
    assert len(block._folded_projections) == 1
    block.double()
    assert not block._folded_projections  # cleared on a cast
    check(x.double())
