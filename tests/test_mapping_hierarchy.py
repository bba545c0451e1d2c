"""WordNet hierarchy, ImageNet metadata, class trees, AudioSet table and override schema (no model)."""

import json

import pytest
import yaml

from mappings import imagenet_classes, imagenet_hierarchy
from mappings.hierarchy import get_args_parser, main
from mappings.ontology import audioset_ontology, split_synonyms
from mappings.overrides import default_overrides_path, load_overrides, parse_overrides
from mappings.trees import cluster_tree, wordnet_tree
from vision import Hierarchy

IMAGENETTE = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916", "n03417042",
              "n03425413", "n03445777", "n03888605"]


@pytest.fixture(scope="module")
def h():
    return imagenet_hierarchy()


def test_imagenet_classes_metadata():
    classes = imagenet_classes()
    assert len(classes) == 1000
    tabby = classes[281]
    assert (tabby.index, tabby.wnid, tabby.name) == (281, "n02123045", "tabby")
    assert tabby.names == ("tabby", "tabby cat")
    assert tabby.gloss == "a cat with a grey or tawny coat mottled with black"
    sub = imagenet_classes(IMAGENETTE)
    assert [c.index for c in sub] == list(range(10)) and sub[1].name == "English springer"


@pytest.mark.parametrize("wnids, message", [(["n99999999"], "not ImageNet-1k classes"),
                                            (["n01440764", "n01440764"], "duplicates"), ([], "empty")])
def test_imagenet_classes_bad_wnids(wnids, message):
    with pytest.raises(ValueError, match=message):
        imagenet_classes(wnids)


def test_classes_under_synsets(h):
    assert h.classes_under("domestic_cat") == (281, 282, 283, 284, 285)
    assert h.classes_under("domestic_cat.n.01") == h.classes_under("n02121808")
    dogs = h.classes_under("dog")
    assert dogs == tuple(range(151, 269)) and len(dogs) == 118
    assert h.classes_under("cat.n.01") == tuple(range(281, 288))  # + cougar, lynx; lions are big cats
    assert 291 not in h.classes_under("cat") and 291 in h.classes_under("big_cat")
    assert h.descendants("tabby") == () and h.classes_under("tabby") == (281,)


def test_ancestors_lca_and_names(h):
    assert h.ancestors(281)[:2] == ("domestic_cat.n.01", "cat.n.01")
    assert h.primary_path(281)[0] == "entity.n.01" and h.primary_path(281)[-1] == "tabby.n.01"
    assert h.lowest_common_ancestor([281, 291]) == "feline.n.01"
    assert h.lowest_common_ancestor([151, 268]) == "dog.n.01"
    assert h.lowest_common_ancestor(["tabby", 285]) == "domestic_cat.n.01"
    assert h.main_sense("dog") == "dog.n.01"
    assert h.main_sense("wind") is None  # sense 1 is moving air; the table only has the instrument
    with pytest.raises(ValueError, match="unknown synset 'no_such_thing'"):
        h.classes_under("no_such_thing")
    with pytest.raises(ValueError, match="at least one"):
        h.lowest_common_ancestor([])


def test_parent_groups_match_imagenet_superclass(h, shared_data):
    folder = shared_data / "imagenet-superclass"
    ref_ids = [int(x) for x in (folder / "superclass.txt").read_text().split()]
    ref_names = (folder / "superclass_names.txt").read_text().splitlines()
    choose = {}
    for i in range(1000):
        parents = h.parents(h.class_wnid(i))
        names = [", ".join(lemma.replace("_", " ") for lemma in h.lemmas(p)) for p in parents]
        assert ref_names[i] in names, (i, names)  # the reference parent is always a direct WordNet parent
        if len(parents) == 1:
            continue
        choose[i] = parents[names.index(ref_names[i])]
    assert len(choose) == 38

    def partition(groups):
        return sorted(sorted(v) for v in groups.values())

    reference = {}
    for i, g in enumerate(ref_ids):
        reference.setdefault(g, []).append(i)
    assert len(reference) == 558
    assert partition(h.parent_groups(choose)) == partition(reference)
    first = h.parent_groups()  # first WordNet parent: differs only for multi-parent classes
    assert len(first) == 556
    single = {i for i in range(1000) if i not in choose}
    for members in first.values():
        owners = {ref_ids[i] for i in members if i in single}
        assert len(owners) <= 1
    with pytest.raises(ValueError, match="not a direct parent"):
        h.parent_groups({281: "dog.n.01"})


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_wordnet_trees_are_valid_and_deterministic(h, levels):
    tree = wordnet_tree(h, levels)
    assert Hierarchy(tree, 1000).tree == tree  # valid in the one tree format
    assert tree == wordnet_tree(h, levels)
    depth, frontier = 0, [tree]
    while frontier:
        frontier = [c for n in frontier if isinstance(n, dict) for c in n["children"]]
        depth += bool(frontier)
    assert depth == levels  # every class sits exactly `levels` below the root
    if levels == 2:
        assert {n["name"]: tuple(n["children"]) for n in tree["children"]} == h.parent_groups()


def test_cluster_tree_nested_and_deterministic():
    import numpy as np

    emb = np.random.default_rng(0).normal(size=(60, 8))
    tree = cluster_tree(emb, levels=3, sizes=[3, 12])
    assert Hierarchy(tree, 60).tree == tree
    assert tree == cluster_tree(emb, levels=3, sizes=[3, 12])
    assert len(tree["children"]) == 3
    assert sum(len(c["children"]) for c in tree["children"]) == 12
    with pytest.raises(ValueError, match="sizes"):
        cluster_tree(emb, levels=3, sizes=[12, 3])


def test_tree_cli_writes_trees_in_the_one_format(h, tmp_path):
    out = main(get_args_parser().parse_args(["--levels", "2", "--out", str(tmp_path / "cli.yaml")]))
    assert out["nodes_per_level"] == [556, 1000]
    assert Hierarchy.load(out["out"], 1000).tree == wordnet_tree(h, 2)
    wnids = tmp_path / "wnids.txt"
    wnids.write_text("\n".join(IMAGENETTE))
    out = main(get_args_parser().parse_args(["--levels", "2", "--wnids", str(wnids), "--out", str(tmp_path / "s.json")]))
    assert sorted(Hierarchy.load(tmp_path / "s.json").leaves()) == list(range(10))
    out = main(get_args_parser().parse_args(["--method", "groups", "--out", str(tmp_path / "g.yaml")]))
    assert out["nodes_per_level"] == [30, 1000]
    with pytest.raises(ValueError, match=".json, .yaml, .yml suffix"):
        main(get_args_parser().parse_args(["--out", str(tmp_path / "t.txt")]))


def test_audioset_table(shared_data):
    onto = audioset_ontology()
    raw = json.loads((shared_data / "audioset" / "ontology.json").read_text())
    assert set(onto.names) == {n["name"] for n in raw}
    assert onto.parents("Meow") == ("Cat",)
    assert onto.parents("Bleat") == ("Goat", "Sheep")
    assert onto.object_of("Helicopter") == "helicopter.n.01" and onto.object_of("Meow") is None
    assert onto.is_root("Animal") and "Animal" not in onto.ancestors("Meow")
    assert onto.lookup("meow") == "Meow" and onto.lookup("purring") is None
    assert split_synonyms("Vehicle horn, car horn, honking") == ("Vehicle horn", "car horn", "honking")
    assert split_synonyms("Roaring cats (lions, tigers)") == ("Roaring cats",)


def test_packaged_overrides_are_valid(h):
    table = load_overrides(default_overrides_path(), h, (1.0, 4.0))
    assert table["chicken"].classes == (7, 8) and table["roaring cats"].classes == tuple(range(288, 294))
    assert table["crow"].classes == ()


@pytest.mark.parametrize("entry, message", [
    ({"x": {"classes": [1000]}}, "entry 'x': classes: unknown id 1000, expected 0..999"),
    ({"x": {"classes": ["5-2"]}}, "'5-2' is not an id or a range"),
    ({"x": {"classes": [True]}}, "classes must be a list of indices or ranges"),
    ({"x": {"synsets": ["no_such_synset"]}}, "unknown synset 'no_such_synset'"),
    ({"x": {"classes": [1], "gain": 9}}, r"bad gain 9, expected a number in \[1.0, 4.0\]"),
    ({"x": {"klasses": [1]}}, "unknown fields"),
    (["x"], "expected a mapping"),
])
def test_override_schema_errors(h, entry, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides(entry, h, (1.0, 4.0))


def test_override_file_errors(h, tmp_path):
    with pytest.raises(FileNotFoundError):
        load_overrides(tmp_path / "missing.yaml", h, (1.0, 4.0))
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump({"Meow": {"classes": ["281-283", 7], "gain": 2.5}}))
    assert load_overrides(path, h, (1.0, 4.0))["meow"].classes == (7, 281, 282, 283)
