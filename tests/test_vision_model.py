"""Contracts of SeqPar models: fused == loop, exact cutouts, gains, save/load, errors."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import vision.model
from tests.vision_helpers import random_tree, tiny_config, tiny_model
from vision import SeqParModel, build_seqpar, load_seqpar
from vision.cost import measure
from vision.nn.blocks import make_block
from vision.nn.reference import BranchLoop

BACKBONES = ["resnet18", "convnextv2_atto", "tf_efficientnet_lite0"]
X = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_fused_matches_branch_loop(backbone):
    model = tiny_model(backbone)
    gains = {2: 2.5, "c": 0.5, 6: 0.0}
    with torch.no_grad():
        torch.testing.assert_close(model(X), BranchLoop(model)(X), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(X, gains=gains), BranchLoop(model)(X, gains=gains), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_fused_matches_loop_at_large_batch(backbone):
    """Batches of 16+ take the split-convolution path; small maps the batched-matmul path."""
    model = tiny_model(backbone)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x, gains={"c": 2.0}), BranchLoop(model)(x, gains={"c": 2.0}),
                                   atol=1e-5, rtol=1e-5)


def test_fused_matches_loop_for_phl_and_pooling_only_leaves():
    phl = tiny_model(tree=None, num_classes=5, branch_channels=(8,))
    one_branch = tiny_model(tree={"name": "root", "children": [{"name": "all", "children": [0, 1, 2]}]},
                            num_classes=3, branch_channels=(16, 16), branch_depth=(2, 0), branch_stride=(2, 1))
    with torch.no_grad():
        for model in (phl, one_branch):
            torch.testing.assert_close(model(X), BranchLoop(model)(X), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model(X, gains={0: 3.0}), BranchLoop(model)(X, gains={0: 3.0}),
                                       atol=1e-5, rtol=1e-5)


def test_chunked_convnext_level_normalises_each_parent_map_once(monkeypatch):
    """Siblings that run in several chunks share their parent map's LayerNorm: computed once per parent."""
    model = tiny_model("convnextv2_atto").eval()
    reference = BranchLoop(model)
    monkeypatch.setattr(vision.model, "CHUNK_BYTES", 1)  # one group per chunk
    calls = []
    for level in model.levels:
        first = level.blocks[0]
        monkeypatch.setattr(first, "prepare_shared",
                            lambda x, first=first: calls.append(x.shape) or type(first).prepare_shared(first, x))
    with torch.no_grad():
        torch.testing.assert_close(model(X), reference(X), atol=1e-5, rtol=1e-5)
        levels = [level for level in model.levels if level.blocks]
        assert len(calls) == sum(len({p for *_, p in level._siblings}) for level in levels) < model.config.num_classes
        torch.testing.assert_close(model(X, gains={"c": 2.0}), reference(X, gains={"c": 2.0}), atol=1e-5, rtol=1e-5)


def test_blocks_size_their_widest_map_where_it_is_made():
    """A bottleneck's hidden map is at its input's resolution (it strides in the middle); a ConvNeXt block's at
    its output's (its projection strides)."""
    bottleneck = make_block("bottleneck", groups=2, in_channels=64, hidden=16, out_channels=32, stride=2)
    convnext = make_block("convnext", groups=2, in_channels=64, hidden=128, out_channels=32, stride=2)
    assert bottleneck.widest_map(14, 14) == max(16 * 14 * 14, 32 * 7 * 7) == 3136
    assert convnext.widest_map(14, 14) == 128 * 7 * 7
    assert convnext.widest_map(7, 7) == 128 * 4 * 4  # "same" padding rounds up
    head = make_block("convhead", groups=2, in_channels=64, hidden=512, out_channels=32)
    assert head.widest_map(5, 5) == 32 * 5 * 5  # one layer: its unused ``hidden`` makes no map


@pytest.mark.parametrize("batch", [1, 2, 16])
def test_chunks_keep_their_widest_map_within_the_budget(monkeypatch, batch):
    model = tiny_model("convnextv2_atto", tree=random_tree(24, seed=3), num_classes=24).eval()
    monkeypatch.setattr(vision.model, "CHUNK_BYTES", 3 * 2**12)
    monkeypatch.setattr(vision.model, "CHUNK_BYTES_PER_IMAGE", 2**12)
    budget = min(3 * 2**12, batch * 2**12)
    parent = model.trunk(torch.zeros(batch, 3, 32, 32))
    for level in model.levels:
        if not level.blocks:
            continue
        widest = max(level.blocks[0].widest_map(*parent.shape[2:]), 1)
        plan = level._chunks(parent)
        assert [g for start, stop, _ in plan for g in range(start, stop)] == list(range(level.groups))
        assert all(stop - start == 1 or (stop - start) * batch * widest * 4 <= budget for start, stop, _ in plan)
        assert any(stop - start > 1 for start, stop, _ in plan) or batch * widest * 4 * 2 > budget
        parent, _ = level(parent)


@pytest.mark.parametrize("batch, leaves", [(3, (3, 2)), (16, (3, 2)), (3, (5, 4))])
def test_convhead_branches_match_loop_and_cut_out_exactly(batch, leaves):
    """Head-conv branches (1x1 conv, BN, ReLU6; gain on the output) under pooling-only leaves: short runs of
    siblings gather their parents' features, long ones (4+ on average) take one product per run."""
    a, b = leaves
    tree = {"name": "root", "children": [{"name": "a", "children": list(range(a))},
                                         {"name": "b", "children": list(range(a, a + b))}]}
    model = tiny_model("tf_efficientnet_lite0", tree=tree, num_classes=a + b, branch_channels=(12, 12),
                       branch_depth=(1, 0), branch_stride=(1, 1), block="convhead")
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for gains in (None, {"a": 2.0, 3: 0.5}):
            torch.testing.assert_close(model(x, gains=gains), BranchLoop(model)(x, gains=gains), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.cutout([4, 0])(x), model(x)[:, [4, 0]], atol=1e-5, rtol=1e-5)
        assert torch.equal(model(x, gains={"a": 1.0}), model(x))
        cued = model(x, gains={"a": 3.0})
        assert torch.equal(cued[:, a:], model(x)[:, a:]) and not torch.equal(cued[:, :a], model(x)[:, :a])


@pytest.mark.parametrize("backbone", BACKBONES)
def test_cutout_logits_equal_full_logits_in_requested_order(backbone):
    model = tiny_model(backbone)
    classes = [5, 0, 6]
    with torch.no_grad():
        sub = model.cutout(classes)
        torch.testing.assert_close(sub(X), model(X)[:, classes], atol=1e-5, rtol=1e-5)
        # Eq. 3: the softmax over the kept logits.
        torch.testing.assert_close(sub(X).softmax(1), model(X)[:, classes].softmax(1), atol=1e-5, rtol=1e-5)
    assert sub.config.class_ids == (5, 0, 6)


@settings(max_examples=20, deadline=None)
@given(num_classes=st.integers(2, 10), seed=st.integers(0, 10_000), data=st.data())
def test_cutout_exact_for_random_trees_and_subsets(num_classes, seed, data):
    tree = random_tree(num_classes, seed)
    model = tiny_model(tree=tree, num_classes=num_classes, seed=seed % 7)
    classes = data.draw(st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=num_classes, unique=True))
    with torch.no_grad():
        full = model(X)
        torch.testing.assert_close(model.cutout(classes)(X), full[:, classes], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(BranchLoop(model)(X), full, atol=1e-5, rtol=1e-5)


def test_cutout_of_cutout_and_original_untouched():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        full = model(X)
        sub = model.cutout([1, 4, 5, 3])
        subsub = sub.cutout([5, 1])
        torch.testing.assert_close(subsub(X), full[:, [5, 1]], atol=1e-5, rtol=1e-5)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    sub_params = {p.data_ptr() for p in sub.parameters()}
    assert not sub_params & {p.data_ptr() for p in model.parameters()}, "a cutout must not share weights"


def test_cutout_is_smaller_and_drops_unrelated_branches():
    model = tiny_model()
    sub = model.cutout([0])
    assert len(sub.state_dict()) < len(model.state_dict())
    assert sub.hierarchy.node_names == ("a",)
    full_cost, cut_cost = measure(model, (1, 3, 32, 32)), measure(sub, (1, 3, 32, 32))
    assert cut_cost.params < full_cost.params and cut_cost.macs < full_cost.macs
    trunk_params = sum(p.numel() for p in model.trunk.parameters())
    assert full_cost.parts[0].params == cut_cost.parts[0].params == trunk_params


def test_cost_is_measured_at_the_models_own_image_size():
    model = tiny_model(image_size=64)
    assert measure(model) == measure(model, (1, 3, 64, 64))
    assert measure(model, (1, 3, 128, 128)).macs > measure(model).macs


@pytest.mark.parametrize("classes, message", [
    ([], "at least one class"), ([1, 1], "duplicates"), ([99], "not classes of this model"),
])
def test_cutout_rejects_bad_classes(classes, message):
    with pytest.raises(ValueError, match=message):
        tiny_model().cutout(classes)


def test_gain_one_is_an_exact_identity():
    model = tiny_model()
    with torch.no_grad():
        base = model(X)
        ones = {c: 1.0 for c in range(7)} | {"a": 1.0, "b": 1.0, "c": 1.0}
        assert torch.equal(model(X, gains=ones), base)
        assert torch.equal(model(X, gains=torch.ones(7)), base)


@pytest.mark.parametrize("key, affected", [(2, {2}), (6, {6}), ("c", {4, 5}), ("b", {3, 4, 5}), ("a", {0, 1, 2})])
def test_gain_changes_only_logits_downstream_of_the_node(key, affected):
    model = tiny_model()
    with torch.no_grad():
        base = model(X)
        changed = (model(X, gains={key: 3.0}) - base).abs().amax(0) > 1e-6
    assert {i for i in range(7) if changed[i]} == affected


def test_numpy_integer_gain_keys_are_class_ids():
    import numpy as np

    model = tiny_model()
    with torch.no_grad():
        assert torch.equal(model(X, gains={np.int64(2): 3.0}), model(X, gains={2: 3.0}))


def test_gain_tensor_gives_per_sample_cues_and_matches_dicts():
    model = tiny_model()
    gains = torch.ones(3, 7)
    gains[0, 2], gains[1, 5] = 4.0, 0.2
    with torch.no_grad():
        batched = model(X, gains=gains)
        assert torch.allclose(batched[0:1], model(X[0:1], gains={2: 4.0}), atol=1e-5)
        assert torch.allclose(batched[1:2], model(X[1:2], gains={5: 0.2}), atol=1e-5)
        assert torch.allclose(batched[2:3], model(X[2:3]), atol=1e-5)


def test_gains_work_on_cutouts_and_agree_with_the_full_model():
    model = tiny_model()
    sub = model.cutout([4, 5, 0])
    gains = {5: 2.0, "c": 1.5}
    with torch.no_grad():
        torch.testing.assert_close(sub(X, gains=gains), model(X, gains=gains)[:, [4, 5, 0]], atol=1e-5, rtol=1e-5)


def test_a_leaf_without_blocks_gains_odds_exactly():
    """A leaf with no blocks has no feature maps: its gain g multiplies its odds by g (adds log g), 0 silences it."""
    model = tiny_model(tree=None, num_classes=4, branch_channels=(8,), branch_depth=(0,))
    with torch.no_grad():
        base = model(X)
        assert torch.equal(model(X, gains={1: 2.0})[:, 1], base[:, 1] + torch.log(torch.tensor(2.0)))
        assert torch.equal(model(X, gains={1: 0.5})[:, [0, 2, 3]], base[:, [0, 2, 3]])  # other classes untouched
        assert torch.all(model(X, gains={1: 0.0})[:, 1] == float("-inf"))
        assert torch.softmax(model(X, gains={1: 0.0}), 1)[:, 1].eq(0).all()


@pytest.mark.parametrize("gains, message", [
    ({2: -1.0}, "finite number >= 0"), ({"nope": 2.0}, "unknown tree node"), ({42: 2.0}, "neither a class id"),
    ({1: float("nan")}, "finite"), (torch.ones(2, 5), "shape"), ([1.0], "mapping"),
])
def test_bad_gains_raise(gains, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(X, gains=gains)


def test_gains_are_arguments_not_state():
    model = tiny_model()
    with torch.no_grad():
        base = model(X)
        model(X, gains={2: 5.0})
        assert torch.equal(model(X), base)


@pytest.mark.parametrize("cut", [None, [6, 4]])
def test_save_load_round_trip(tmp_path, cut):
    model = tiny_model(class_names=tuple(f"name{i}" for i in range(7)), metadata={"source": "test"})
    if cut:
        model = model.cutout(cut)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_seqpar(tmp_path)
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(X), model(X))
    if cut:
        assert loaded.config.class_names == ("name6", "name4")


def test_load_reports_missing_files_and_mismatched_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_seqpar(tmp_path)
    model = tiny_model()
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    dropped = sorted(state)[-1]
    del state[dropped]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=f"missing: \\['{dropped}'"):
        load_seqpar(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "branch_channels": [32, 8, 8]}))
    with pytest.raises(ValueError, match="wrong shape"):
        load_seqpar(tmp_path)


def test_frozen_trunk_stays_in_eval_mode_and_has_no_gradients():
    model = build_seqpar(tiny_config(freeze_trunk=True)).train()
    assert not any(p.requires_grad for p in model.trunk.parameters())
    assert all(p.requires_grad for p in model.levels.parameters())
    assert not model.trunk.training and model.levels.training
    bn = next(m for m in model.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    model(X).sum().backward()
    assert torch.equal(bn.running_mean, stats)


def test_training_mode_cutout_keeps_mode_and_gradients_flow():
    model = tiny_model().train()
    sub = model.cutout([0, 6])
    assert sub.training
    sub(X).sum().backward()
    assert all(p.grad is not None for p in sub.levels.parameters())


def test_trunk_is_the_timm_backbone_up_to_the_split_point():
    import timm

    model = build_seqpar(tiny_config())
    reference = timm.create_model("resnet18")
    expected = sum(p.numel() for name, p in reference.named_parameters()
                   if name.split(".")[0] in {"conv1", "bn1", "layer1"})
    assert sum(p.numel() for p in model.trunk.parameters()) == expected
    assert isinstance(model, SeqParModel)
