"""The native EfficientNet-Lite (vision.nn.lite) against timm, its reference: same keys, shapes and outputs."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vision.nn.trunk
from tests.vision_helpers import randomise_norms
from vision import load_seqpar
from vision.nn.lite import VARIANTS, EfficientNetLite, stage_names
from vision.nn.trunk import Trunk
from vision.zoo.lite import (
    load_lite_state_dict,
    pretrained_lite_state_dict,
    remap_lite_state_dict,
    timm_name,
)
from vision.zoo.weights import trunk_weight_source

timm = pytest.importorskip("timm")
ROOT = Path(__file__).resolve().parents[1]


def use_timm_trunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, tf_efficientnet_lite* trunks are built as before the native module: timm's model, pruned."""
    families = dict(vision.nn.trunk._FAMILIES)
    families["tf_efficientnet_lite"] = dataclasses.replace(families["efficientnet_lite"],
                                                           prefixes=("tf_efficientnet_lite",))
    monkeypatch.setattr(vision.nn.trunk, "_FAMILIES", families)


def assert_timms_numerics(native: torch.nn.Module, reference: torch.nn.Module, x: torch.Tensor) -> None:
    """With autograd the native network computes exactly timm's numbers; in inference (BatchNorm folded,
    channels-last) the same within float rounding, which random weights and BatchNorm statistics amplify over
    the deeper variants' 20-40 layers (lite4: up to 0.012 % of the output's scale)."""
    with torch.enable_grad():
        assert torch.equal(native(x), reference(x)), tuple(x.shape)
    with torch.no_grad():
        fast, expected = native(x), reference(x)
    torch.testing.assert_close(fast, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    assert fast.is_contiguous()


@pytest.mark.parametrize("backbone", sorted(VARIANTS))
def test_native_trunks_equal_pruned_timm_trunks_at_every_split_point(backbone, monkeypatch):
    use_timm_trunks(monkeypatch)
    torch.manual_seed(0)
    inputs = [torch.randn(batch, 3, size, size) for size in (160, 224, 97) for batch in (1, 3)]
    for split_point in stage_names():
        reference = Trunk(backbone, split_point).eval()
        assert not isinstance(reference.body, EfficientNetLite)
        randomise_norms(reference)
        native = EfficientNetLite(backbone, split_point).eval()
        expected = reference.body.state_dict()
        assert {k: v.shape for k, v in native.state_dict().items()} == {k: v.shape for k, v in expected.items()}
        native.load_state_dict(expected)
        assert native.out_channels == reference.out_channels
        for x in inputs:
            assert_timms_numerics(native, reference, x)


@pytest.mark.parametrize("backbone", sorted(VARIANTS))
def test_whole_native_network_has_timms_keys_and_logits(backbone):
    torch.manual_seed(0)
    reference = timm.create_model(backbone).eval()
    randomise_norms(reference)
    native = EfficientNetLite(backbone).eval()
    assert list(native.state_dict()) == list(reference.state_dict())
    native.load_state_dict(reference.state_dict())
    assert_timms_numerics(native, reference, torch.randn(2, 3, 97, 97))


def test_lite_trunks_are_native():
    trunk = Trunk("tf_efficientnet_lite0", "blocks.2")
    assert isinstance(trunk.body, EfficientNetLite) and trunk.out_channels == 40


def test_pretrained_lite0_weights_without_timm_equal_those_loaded_through_timm():
    reference = timm.create_model(timm_name("lite0"))
    reference.load_state_dict(remap_lite_state_dict(load_lite_state_dict("lite0"), reference))
    expected = reference.state_dict()
    got = pretrained_lite_state_dict("lite0")
    assert list(got) == list(expected)
    for key, value in got.items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key
    assert trunk_weight_source("lite0", "tf_efficientnet_lite0").load().keys() == expected.keys()


def test_default_model_logits_on_real_photos_equal_its_timm_trunk_version(shared_data, monkeypatch):
    from PIL import Image

    from vision.data import eval_transform

    torch.set_num_threads(1)
    native = load_seqpar("default")
    use_timm_trunks(monkeypatch)
    reference = load_seqpar("default")
    assert isinstance(native.trunk.body, EfficientNetLite) and not isinstance(reference.trunk.body, EfficientNetLite)
    paths = sorted((shared_data / "imagenet-samples").glob("*.JPEG"))[::50]
    transform = eval_transform(native.data_config())
    photos = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    assert_timms_numerics(native, reference, photos)
    with torch.no_grad():
        assert torch.equal(native(photos).argmax(1), reference(photos).argmax(1))


def test_default_model_loads_and_predicts_without_importing_timm_or_what_it_pulls_in():
    """The cold start: no timm, no torchvision, and no sympy or torch._dynamo (random fills on the meta device)."""
    code = ("import sys, torch; from vision import load_seqpar; m = load_seqpar('default'); "
            "m(torch.zeros(1, 3, 160, 160)); m.cutout([281, 282]); "
            "print(sorted(n for n in sys.modules if n in ('timm', 'torchvision', 'sympy', 'torch._dynamo')))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_unknown_variant_or_split_point_is_a_value_error_naming_the_expected_values():
    with pytest.raises(ValueError, match=r"'tf_efficientnet_lite9'; expected one of \['tf_efficientnet_lite0', .*4'\]"):
        EfficientNetLite("tf_efficientnet_lite9")
    with pytest.raises(ValueError, match=r"'tf_efficientnet_lite9'; expected one of"):
        Trunk("tf_efficientnet_lite9", "blocks.2")
    expected = r"expected one of \['bn1', 'blocks.0', .*'blocks.6'\]"
    with pytest.raises(ValueError,
                       match=r"split_point 'blocks.7' is not a stage of tf_efficientnet_lite0; " + expected):
        EfficientNetLite("tf_efficientnet_lite0", "blocks.7")
    with pytest.raises(ValueError, match=r"split_point 'layer3' is not a stage of tf_efficientnet_lite2; " + expected):
        Trunk("tf_efficientnet_lite2", "layer3")
