"""Inputs of the default-model build: labelled photos, the hold-out split and the WordNet group tree."""

from pathlib import Path

import pytest

from mappings import imagenet_hierarchy, wordnet_group_tree
from vision.data import LabelledImage, list_labelled_images
from vision.data.photos import is_held_out, split_photos
from vision.hierarchy import Hierarchy

WORDNET = imagenet_hierarchy()


def test_photos_are_labelled_by_sorted_wnid_position(shared_data):
    photos = list_labelled_images(shared_data / "imagenet-samples")
    by_name = {p.path.name: p.class_id for p in photos}
    assert len(photos) == 800
    assert by_name["n01440764_tench.JPEG"] == 0
    assert by_name["n02123045_tabby.JPEG"] == 281
    assert by_name["n15075141_toilet_tissue.JPEG"] == 999


def test_hold_out_split_is_a_deterministic_partition(shared_data):
    photos = list_labelled_images(shared_data / "imagenet-samples")
    build, held_out = split_photos(photos)
    assert (len(build), len(held_out)) == (623, 177)
    assert set(build).isdisjoint(held_out) and len(set(build) | set(held_out)) == 800
    moved = LabelledImage(Path("/elsewhere") / held_out[0].path.name, held_out[0].class_id)
    assert is_held_out(moved)  # depends on the file name only, not on the folder


def test_photo_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        list_labelled_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no images"):
        list_labelled_images(tmp_path)
    (tmp_path / "x1234_cat.JPEG").write_bytes(b"")
    with pytest.raises(ValueError, match="expected an ImageNet wnid .* got 'x1234'"):
        list_labelled_images(tmp_path)


def test_wordnet_groups_partition_the_classes_under_a_size_cap():
    tree = wordnet_group_tree(WORDNET, 150)
    groups = [node["children"] for node in tree["children"]]
    assert len(groups) == 51 and max(map(len, groups)) == 130
    assert sorted(c for g in groups for c in g) == list(range(1000))
    assert {"name": "feline", "children": list(range(281, 294))} in tree["children"]  # domestic and big cats
    assert Hierarchy(tree, 1000).depth == 2
    singles = wordnet_group_tree(WORDNET, 1)["children"]
    assert len(singles) == 1000 and singles[281] == {"name": "tabby", "children": [281]}


def test_small_wordnet_groups_merge_under_their_parent():
    tree = wordnet_group_tree(WORDNET, 100, 20)
    groups = {node["name"]: node["children"] for node in tree["children"]}
    assert sorted(c for g in groups.values() for c in g) == list(range(1000))
    assert len(groups) == 30 and max(map(len, groups.values())) <= 100
    # feline (13 classes) and the other small carnivore groups merge; dog groups of >= 20 stay as they are
    assert groups["carnivore (other)"][:13] == list(range(281, 294)) and len(groups["carnivore (other)"]) == 28
    assert "hunting dog" in groups and "feline" not in groups
    assert [len(n["children"]) for n in wordnet_group_tree(WORDNET, 150, 1)["children"]] == \
        [len(n["children"]) for n in wordnet_group_tree(WORDNET, 150)["children"]]
    assert Hierarchy.load("configs/hierarchies/imagenet1k_wordnet_groups.yaml").tree == tree  # the shipped file


def test_wordnet_group_tree_errors():
    with pytest.raises(ValueError, match="max_classes=0"):
        wordnet_group_tree(WORDNET, 0)
    with pytest.raises(ValueError, match="min_classes=20: expected 1 <= min_classes <= max_classes=10"):
        wordnet_group_tree(WORDNET, 10, 20)
