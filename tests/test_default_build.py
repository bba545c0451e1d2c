"""The default-model build recipe: deterministic views, and a closed-form fit that equals the built model."""

import pytest
import torch

from vision import load_seqpar
from vision.build_default import (
    BuildSettings,
    assemble,
    branch_logits,
    collect_views,
    fit_branches,
    reference_block,
    source_block,
    view_transforms,
)
from vision.photos import list_imagenet_photos, load_rgb, split_photos
from vision.pretrained import create_pretrained_lite
from vision.wordnet_tree import superclass_tree

SPLIT_INDEX = 5  # forward_intermediates index of "blocks.4" (index 0 is the stem's "bn1")


@pytest.fixture(scope="module")
def built(shared_data):
    torch.set_num_threads(1)
    build, _ = split_photos(list_imagenet_photos(shared_data / "imagenet-samples"))
    photos = build[:3]
    settings = BuildSettings(views=1, hidden=8, channels=16)
    teacher = create_pretrained_lite(settings.variant)
    ref = reference_block(source_block(teacher, settings.split_point))
    hidden, logits = collect_views(photos, teacher, settings, SPLIT_INDEX, ref)
    tree = superclass_tree(shared_data / "imagenet-superclass" / "superclass.txt")
    fits = fit_branches(hidden, logits, [list(n["children"]) for n in tree["children"]], ref, settings)
    model = assemble(settings, tree, teacher, fits, {"test": True})
    return photos, settings, teacher, ref, hidden, logits, fits, model


def test_views_are_deterministic(built):
    photos, settings, teacher, ref, hidden, logits, _, _ = built
    assert hidden.shape == (len(photos) * (1 + settings.views), 672)  # blocks.5.0 inner width of lite0
    again_hidden, again_logits = collect_views(photos[:1], teacher, settings, SPLIT_INDEX, ref)
    assert torch.equal(again_logits, logits[: 1 + settings.views])
    assert torch.equal(again_hidden, hidden[: 1 + settings.views])


def test_closed_form_logits_equal_the_assembled_model(built):
    photos, settings, _, ref, hidden, _, fits, model = built
    _, centre, to_student, normalise = view_transforms(settings)
    from torchvision.transforms import v2

    x = normalise(to_student(centre(v2.functional.to_image(load_rgb(photos[0].path))))).unsqueeze(0)
    with torch.no_grad():
        got = model(x)[0]
    expected = branch_logits(hidden[:1], fits, ref)[0]
    assert got.shape == (1000,)
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-4)


def test_trunk_is_the_teachers_and_frozen(built, tmp_path):
    _, _, teacher, _, _, _, _, model = built
    teacher_state = teacher.state_dict()
    for key, value in model.trunk.body.state_dict().items():
        assert torch.equal(value, teacher_state[key]), key
    assert not any(p.requires_grad for p in model.trunk.parameters())
    model.save_pretrained(tmp_path)
    loaded = load_seqpar(tmp_path)
    assert loaded.config.metadata == {"test": True}
    assert loaded.config.branch_hidden == (8, None) and loaded.config.split_point == "blocks.4"
