"""Top-down attention enhances: a gain > 1 never lowers a cued class's odds against an uncued one (< 1 never
raises them), for every block type and tree depth, on random models and on the packaged default model."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.vision_helpers import random_tree, tiny_model
from vision import load_seqpar
from vision.nn.reference import BranchLoop

torch.set_num_threads(1)
BLOCKS = {"resnet18": ("bottleneck",), "convnextv2_atto": ("convnext",), "tf_efficientnet_lite0": ("mbconv", "convhead")}


def _assert_enhances(model, x: torch.Tensor, gains: dict) -> None:
    """Against the plain logits: classes with path gain G != 1 move by at least log G in G's direction,
    every class with G == 1 stays exactly where it was."""
    with torch.no_grad():
        plain = model(x)
        attended = model(x, gains=gains)
    path = model.path_gains(model.level_gains(gains, x.shape[0])).expand_as(plain)
    cued_up, cued_down, uncued = path > 1, path < 1, path == 1
    shift = attended - plain
    assert torch.equal(attended[uncued], plain[uncued])
    log_path = torch.log(path)
    assert torch.all(shift[cued_up] >= log_path[cued_up] - 1e-5)
    assert torch.all(shift[cued_down & (path > 0)] <= log_path[cued_down & (path > 0)] + 1e-5)
    assert torch.all(attended[path == 0] == float("-inf"))
    # so the odds of a cued class against any uncued one never fall (gain > 1) or rise (gain < 1)
    probs, base = torch.softmax(attended, 1), torch.softmax(plain, 1)
    if uncued.any():
        ratio = torch.log(probs) - torch.log(base)  # per class; uncued classes share one value per sample
        ref = torch.where(uncued, ratio, torch.nan).nanmean(1, keepdim=True)
        assert torch.all((ratio - ref)[cued_up] >= -1e-4)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_gains_enhance_on_random_models_of_every_block_type_and_depth(data):
    backbone = data.draw(st.sampled_from(sorted(BLOCKS)))
    block = data.draw(st.sampled_from(BLOCKS[backbone]))
    num_classes = data.draw(st.integers(3, 9))
    tree = random_tree(num_classes, data.draw(st.integers(0, 1000)))
    model = tiny_model(backbone, seed=data.draw(st.integers(0, 50)), tree=tree, num_classes=num_classes, block=block,
                       topology="nhl")
    keys = list(range(num_classes)) + list(model.hierarchy.node_names)
    chosen = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True))
    gains = {k: data.draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0])) for k in chosen}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(len(chosen)))
    _assert_enhances(model, x, gains)
    with torch.no_grad():  # the fused execution and the per-branch reference loop agree on attention too
        torch.testing.assert_close(model(x, gains=gains), BranchLoop(model)(x, gains=gains), atol=1e-4, rtol=1e-4)


def test_feature_map_gains_still_act_where_a_branch_has_blocks():
    """The paper's gain multiplies a branch's feature maps; its effect is kept when it goes the gain's way."""
    model = tiny_model()  # bottleneck branches on every level
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(x)
        attended = model(x, gains={"a": 3.0})
    below_a = [0, 1, 2]
    beyond_prior = attended[:, below_a] - plain[:, below_a] - math.log(3.0)
    assert torch.all(beyond_prior >= 0) and torch.any(beyond_prior > 1e-4)  # the feature effect, where it enhances


def test_gain_one_everywhere_is_an_exact_identity_for_every_block_type():
    for backbone, blocks in BLOCKS.items():
        for block in blocks:
            model = tiny_model(backbone, block=block)
            x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
            ones = {k: 1.0 for k in list(range(7)) + list(model.hierarchy.node_names)}
            with torch.no_grad():
                assert torch.equal(model(x, gains=ones), model(x)), (backbone, block)


@pytest.fixture(scope="module")
def default_model():
    return load_seqpar("default")


@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_gains_enhance_on_the_default_model(default_model, data):
    """The regression: on the default model a gain of 4 used to lower negative-logit classes (gorilla on a cat)."""
    pytest.importorskip("skimage")
    from PIL import Image
    from skimage import data as images

    from vision.data import eval_transform

    x = eval_transform(default_model.data_config())(Image.fromarray(images.chelsea()))[None]
    names = list(default_model.hierarchy.node_names)
    keys = data.draw(st.lists(st.one_of(st.integers(0, 999), st.sampled_from(names)), min_size=1, max_size=3,
                              unique=True))
    gains = {k: data.draw(st.sampled_from([0.5, 2.0, 4.0])) for k in keys}
    _assert_enhances(default_model, x, gains)


def test_gorilla_on_a_cat_photo_is_enhanced_by_gain_4(default_model):
    pytest.importorskip("skimage")
    from PIL import Image
    from skimage import data as images

    from vision.data import eval_transform

    x = eval_transform(default_model.data_config())(Image.fromarray(images.chelsea()))[None]
    with torch.no_grad():
        plain = torch.softmax(default_model(x).float(), 1)[0, 366]  # gorilla
        cued = torch.softmax(default_model(x, gains={366: 4.0}).float(), 1)[0, 366]
    assert cued > plain  # and by about 4x: the gain multiplies the odds
    assert cued / plain == pytest.approx(4.0, rel=0.05)
