"""Inputs of the default-model build: labelled photos, the hold-out split and the WordNet tree."""

from pathlib import Path

import pytest

from vision.hierarchy import Hierarchy
from vision.photos import LabelledPhoto, is_held_out, list_imagenet_photos, split_photos
from vision.wordnet_tree import superclass_tree, wordnet_group_tree

WORDNET = Path(__file__).parents[1] / "mappings" / "data" / "wordnet_imagenet.json"


def test_photos_are_labelled_by_sorted_wnid_position(shared_data):
    photos = list_imagenet_photos(shared_data / "imagenet-samples")
    by_name = {p.path.name: p.class_index for p in photos}
    assert len(photos) == 800
    assert by_name["n01440764_tench.JPEG"] == 0
    assert by_name["n02123045_tabby.JPEG"] == 281
    assert by_name["n15075141_toilet_tissue.JPEG"] == 999


def test_hold_out_split_is_a_deterministic_partition(shared_data):
    photos = list_imagenet_photos(shared_data / "imagenet-samples")
    build, held_out = split_photos(photos)
    assert (len(build), len(held_out)) == (623, 177)
    assert set(build).isdisjoint(held_out) and len(set(build) | set(held_out)) == 800
    moved = LabelledPhoto(Path("/elsewhere") / held_out[0].path.name, held_out[0].class_index)
    assert is_held_out(moved)  # depends on the file name only, not on the folder


def test_photo_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_imagenet_photos(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no"):
        list_imagenet_photos(tmp_path)
    (tmp_path / "x1234_cat.JPEG").write_bytes(b"")
    with pytest.raises(ValueError, match="ImageNet-1k wnid, got 'x1234'"):
        list_imagenet_photos(tmp_path)


def test_superclass_tree_has_558_wordnet_parents(shared_data):
    tree = superclass_tree(shared_data / "imagenet-superclass" / "superclass.txt")
    hierarchy = Hierarchy(tree, 1000)
    assert len(tree["children"]) == 558 and hierarchy.depth == 2
    assert {"name": "domestic cat", "children": [281, 282, 283, 284, 285]} in tree["children"]
    names = [node["name"] for node in tree["children"]]
    assert "cap (234)" in names and len(set(names)) == 558


def test_superclass_tree_rejects_a_short_file(tmp_path):
    (tmp_path / "superclass.txt").write_text("0\n1\n")
    (tmp_path / "superclass_names.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="expected 1000 lines"):
        superclass_tree(tmp_path / "superclass.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        superclass_tree(tmp_path / "nope.txt")


def test_wordnet_groups_partition_the_classes_under_a_size_cap():
    tree = wordnet_group_tree(WORDNET, 150)
    groups = [node["children"] for node in tree["children"]]
    assert len(groups) == 51 and max(map(len, groups)) == 130
    assert sorted(c for g in groups for c in g) == list(range(1000))
    assert {"name": "feline", "children": list(range(281, 294))} in tree["children"]  # domestic and big cats
    assert Hierarchy(tree, 1000).depth == 2
    assert [len(g) for g in groups] == [len(n["children"]) for n in wordnet_group_tree(WORDNET, 150)["children"]]
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


def test_wordnet_group_tree_errors(tmp_path):
    with pytest.raises(ValueError, match="max_classes=0"):
        wordnet_group_tree(WORDNET, 0)
    with pytest.raises(ValueError, match="min_classes=20: expected 1 <= min_classes <= max_classes=10"):
        wordnet_group_tree(WORDNET, 10, 20)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        wordnet_group_tree(tmp_path / "none.json", 10)
    (tmp_path / "wn.json").write_text('{"synsets": {"n01440764": {"lemmas": ["tench"], "parents": ["n0"]}}}')
    with pytest.raises(ValueError, match="synset n0 .* is missing"):
        wordnet_group_tree(tmp_path / "wn.json", 10)
