"""The default-model build recipe: deterministic views, and a closed-form fit that equals the built model."""

import pytest
import torch
from safetensors.torch import load_file
from torchvision.transforms import v2

from mappings import imagenet_hierarchy, wordnet_tree
from vision import load_seqpar
from vision.data import list_labelled_images, load_rgb
from vision.data.photos import split_photos
from vision.zoo.build import (
    BuildSettings,
    adapt_norms,
    assemble,
    branch_logits,
    collect_views,
    fit_branches,
    head_block,
    head_features,
    read_tree,
    render_views,
    view_transforms,
)
from vision.zoo.lite import create_pretrained_lite


@pytest.fixture(scope="module")
def built(shared_data):
    torch.set_num_threads(1)
    build, _ = split_photos(list_labelled_images(shared_data / "imagenet-samples"))
    photos = build[:3]
    settings = BuildSettings(views=1, width=8)
    teacher = create_pretrained_lite(settings.variant)
    pooled = collect_views(photos, teacher, settings)
    tree = wordnet_tree(imagenet_hierarchy(), 2)  # the direct WordNet parents
    fits = fit_branches(pooled, teacher.classifier, [list(n["children"]) for n in tree["children"]], settings.width,
                        settings.ridge)
    model = assemble(settings, tree, teacher, fits, {"test": True})
    return photos, settings, teacher, pooled, fits, model


def test_head_block_reproduces_the_teacher(built):
    photos, settings, teacher, _, _, _ = built
    _, centre, _, normalise = view_transforms(settings)
    x = normalise(centre(v2.functional.to_image(load_rgb(photos[0].path)))).unsqueeze(0)
    with torch.no_grad():
        features = teacher.forward_intermediates(x, indices=[7], intermediates_only=True, stop_early=True,
                                                 extra_blocks=True)[0]
        pooled = head_block(teacher)(features).mean((2, 3))
        torch.testing.assert_close(teacher.classifier(pooled), teacher(x), atol=1e-4, rtol=1e-5)


def test_views_are_deterministic(built):
    photos, settings, teacher, pooled, _, _ = built
    assert pooled.shape == (len(photos) * (1 + settings.views), 1280)
    assert torch.equal(collect_views(photos[:1], teacher, settings), pooled[: 1 + settings.views])


def test_fit_calibrates_mean_logits(built):
    _, settings, teacher, pooled, fits, _ = built
    cats = next(f for f in fits if 281 in f.members)
    assert cats.members == [281, 282, 283, 284, 285] and len(cats.inner) == settings.width
    with torch.no_grad():
        full = teacher.classifier(pooled)
    torch.testing.assert_close(branch_logits(pooled, fits).mean(0), full.mean(0), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="width=2000"):
        fit_branches(pooled, teacher.classifier, [cats.members], 2000, 0.1)
    with pytest.raises(ValueError, match="ridge=-1"):
        fit_branches(pooled, teacher.classifier, [cats.members], 8, -1.0)


def test_fit_with_all_channels_and_no_ridge_is_the_classifier():
    torch.manual_seed(0)
    classifier = torch.nn.Linear(16, 6)
    pooled = torch.randn(200, 16) @ torch.randn(16, 16)  # correlated channels
    fits = fit_branches(pooled, classifier, [[0, 2, 5], [1, 3, 4]], keep=16, ridge=0.0)
    for fit in fits:
        assert fit.inner.tolist() == list(range(16))
        torch.testing.assert_close(fit.weight, classifier.weight[fit.members].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fit.bias, classifier.bias[fit.members].detach(), atol=1e-5, rtol=1e-5)
    dropped = fit_branches(pooled, classifier, [[0, 2, 5]], keep=12, ridge=0.0)[0]  # refit, not the rows
    with torch.no_grad():
        best = torch.linalg.lstsq(torch.cat([pooled[:, dropped.inner], torch.ones(200, 1)], 1),
                                  classifier(pooled)[:, [0, 2, 5]]).solution
    torch.testing.assert_close(dropped.weight, best[:-1].T, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dropped.bias, best[-1], atol=1e-4, rtol=1e-4)


def test_closed_form_logits_equal_the_assembled_model(built):
    photos, settings, _, pooled, fits, model = built
    _, centre, to_student, normalise = view_transforms(settings)
    x = normalise(to_student(centre(v2.functional.to_image(load_rgb(photos[0].path))))).unsqueeze(0)
    with torch.no_grad():
        got = model(x)[0]
    assert got.shape == (1000,)
    torch.testing.assert_close(got, branch_logits(pooled[:1], fits)[0], atol=1e-4, rtol=1e-4)


def test_trunk_is_the_teachers_and_round_trips(built, tmp_path):
    _, _, teacher, _, _, model = built
    teacher_state = teacher.state_dict()
    for key, value in model.trunk.body.state_dict().items():
        assert torch.equal(value, teacher_state[key]), key
    assert not any(p.requires_grad for p in model.trunk.parameters())
    model.save_pretrained(tmp_path)
    loaded = load_seqpar(tmp_path)
    assert loaded.config.metadata == {"test": True} and loaded.config.pretrained_trunk == "lite0"
    assert load_file(tmp_path / "model.safetensors").keys() == {k for k in model.state_dict() if not k.startswith("trunk.")}
    for key, value in loaded.trunk.body.state_dict().items():
        assert torch.equal(value, teacher_state[key]), key
    assert (loaded.config.split_point, loaded.config.block, loaded.config.branch_channels) == ("blocks.6", "convhead", (8, 8))


def test_the_build_reads_a_two_level_tree_file(tmp_path):
    shipped = read_tree("configs/hierarchies/imagenet1k_wordnet_groups.yaml")
    assert shipped == load_seqpar("default").config.hierarchy  # the packaged model was built from it
    with pytest.raises(ValueError, match="needs a 2-level tree"):
        read_tree("configs/hierarchies/imagenet1k_wordnet_l3.yaml")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_tree(tmp_path / "none.yaml")


def test_norm_adaptation_trains_only_norm_affines_deterministically(built, tmp_path):
    photos, _, teacher, _, _, _ = built
    settings = BuildSettings(views=1, width=8, adapt_epochs=2, adapt_lr=1e-4)
    views = render_views(photos, settings, teacher)
    assert views.inputs.dtype == torch.uint8 and views.inputs.shape == (6, 3, 160, 160)
    torch.testing.assert_close(views.targets.sum(1), torch.ones(6))
    with pytest.raises(ValueError, match="needs the teacher's targets"):
        adapt_norms(teacher, render_views(photos[:1], settings), settings)
    adapted = adapt_norms(teacher, views, settings)
    before, after = teacher.state_dict(), adapted.state_dict()
    norms = {name + suffix for name, m in teacher.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
             for suffix in (".weight", ".bias")}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= norms  # running statistics and every conv / linear weight stay the teacher's
    again = adapt_norms(teacher, views, settings).state_dict()
    assert all(torch.equal(after[k], again[k]) for k in after)
    normalise = view_transforms(settings)[3]
    with torch.no_grad():
        def loss(net):
            return -(views.targets * torch.log_softmax(net(normalise(views.inputs)), 1)).sum(1).mean()
        assert loss(adapted) < loss(teacher)
    # the built model saves the adapted norms (and only them) beside its branches, and loads them back
    pooled = head_features(adapted, views.inputs, settings)
    tree = {"name": "root", "children": [{"name": "all", "children": list(range(1000))}]}
    fits = fit_branches(pooled, adapted.classifier, [list(range(1000))], 8, 0.01)
    model = assemble(settings, tree, adapted, fits, {})
    model.save_pretrained(tmp_path)
    saved_trunk = {k.removeprefix("trunk.body.") for k in load_file(tmp_path / "model.safetensors") if k.startswith("trunk.")}
    assert saved_trunk == {k for k in changed if not k.startswith(("conv_head", "bn2", "classifier"))}
    x = normalise(views.inputs[:2])
    with torch.no_grad():
        torch.testing.assert_close(load_seqpar(tmp_path)(x), model(x))
