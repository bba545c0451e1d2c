"""Hierarchy and config validation, presets and cost accounting of full-size models."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from tests.vision_helpers import TREE, tiny_config
from vision import Hierarchy, SeqParConfig
from vision.cost import cli, get_args_parser, main, measure
from vision.model import SeqParModel
from vision.presets import available_presets, preset
from xmcommon.ids import parse_ids


@pytest.mark.parametrize("tree, num_classes, message", [
    ({"name": "r", "children": [0, 1, 1]}, 2, "twice"),
    ({"name": "r", "children": [0]}, 2, "misses 1 of 2"),
    ({"name": "r", "children": [0, 5]}, 2, "out of range"),
    ({"name": "r", "children": [0, {"name": "r", "children": [1]}]}, 2, "used twice"),
    ({"name": "r", "children": [0, {"name": "x", "children": []}, 1]}, 2, "non-empty list"),
    ({"name": "r", "children": [0, "1"]}, 2, "class index or a mapping"),
    ({"name": "r", "children": [0, 1], "gain": 2}, 2, "unknown keys"),
    ({"children": [0, 1]}, 2, "non-empty string 'name'"),
    ([0, 1], 2, "mapping"),
    ({"name": "r", "children": [True, 1]}, 2, "class index or a mapping"),
])
def test_hierarchy_validation_errors(tree, num_classes, message):
    with pytest.raises(ValueError, match=message):
        Hierarchy(tree, num_classes)


def test_hierarchy_levels_paths_and_files(tmp_path):
    h = Hierarchy(TREE, 7)
    assert [[n.name for n in level] for level in h.levels] == [
        ["a", "b", "class:6"], ["class:0", "class:1", "class:2", "class:3", "c"], ["class:4", "class:5"]]
    assert h.path(*h.leaf_position(5)) == [(2, 1), (1, 4), (0, 1)]
    for suffix in (".yaml", ".json"):
        h.save(tmp_path / f"tree{suffix}")
        assert Hierarchy.load(tmp_path / f"tree{suffix}").tree == h.tree
    with pytest.raises(FileNotFoundError):
        Hierarchy.load(tmp_path / "missing.yaml")
    tree, positions = h.subset([5, 0])
    assert tree == {"name": "root", "children": [{"name": "a", "children": [1]},
                                                 {"name": "b", "children": [{"name": "c", "children": [0]}]}]}
    assert positions == [[0, 1], [0, 4], [1]]


def test_balanced_and_flat_trees():
    assert Hierarchy.flat(3).levels[0][2].class_index == 2
    tree = Hierarchy.balanced(10, [3, 2]).tree
    assert [len(g["children"]) for g in tree["children"]] == [2, 2]
    assert Hierarchy(tree, 10).depth == 3


@pytest.mark.parametrize("changes, message", [
    (dict(branch_channels=(16, 8)), "one value per tree level"),
    (dict(topology="nhl", hierarchy=None), "needs a hierarchy"),
    (dict(topology="tree"), "topology"),
    (dict(block="transformer"), "block must be one of"),
    (dict(attention_block=1), "attention_block"),
    (dict(branch_stride=(3, 1, 1)), "stride"),
    (dict(branch_depth=(0, 1, 1)), "inner nodes"),
    (dict(class_ids=(0, 0, 1, 2, 3, 4, 5)), "distinct"),
    (dict(backbone="vit_base_patch16_224"), "unsupported backbone"),
    (dict(split_point="layer9"), "not a stage"),
])
def test_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        cfg = tiny_config().replace(**changes)
        SeqParModel(cfg)


def test_config_round_trips_through_json():
    cfg = tiny_config(class_ids=tuple(range(100, 107)), metadata={"a": [1, 2]})
    assert SeqParConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown SeqParConfig fields"):
        SeqParConfig.from_dict({**cfg.to_dict(), "colour": "red"})


def _meta_model(config: SeqParConfig) -> SeqParModel:
    with torch.device("meta"):
        return SeqParModel(config).to("meta")


@pytest.mark.parametrize("backbone, split, stages", [
    ("resnet50", "layer3", {"conv1", "bn1", "layer1", "layer2", "layer3"}),
    ("resnet152", "layer3", {"conv1", "bn1", "layer1", "layer2", "layer3"}),
    ("convnextv2_tiny", "stages.2", {"stem", "stages.0", "stages.1", "stages.2"}),
    ("tf_efficientnet_lite0", "blocks.4", {"conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2", "blocks.3",
                                           "blocks.4"}),
])
def test_full_size_trunks_have_exactly_timms_parameters(backbone, split, stages):
    with torch.device("meta"):
        reference = timm.create_model(backbone)
    expected = sum(p.numel() for name, p in reference.named_parameters()
                   if name.split(".")[0] in stages or ".".join(name.split(".")[:2]) in stages)
    config = SeqParConfig(backbone=backbone, split_point=split, num_classes=4, branch_channels=(32,))
    assert sum(p.numel() for p in _meta_model(config).trunk.parameters()) == expected


def test_presets_land_near_the_papers_totals():
    latesp = _meta_model(preset("phl_latesp_resnet50", num_classes=10))
    full, cut = measure(latesp), measure(latesp.cutout(range(5), share_trunk=True))
    assert abs(full.params - 19_986_506) / 19_986_506 < 0.01  # paper Table 2: 19,986,506
    assert abs(cut.params - 14_264_901) / 14_264_901 < 0.01  # paper: 14,264,901
    assert abs(cut.gmacs - 3.66) < 0.05
    nhl = measure(_meta_model(preset("nhl_resnet50", num_classes=100)))
    assert abs(nhl.params - 23_712_932) / 23_712_932 < 0.05  # paper: 23,712,932
    convnext = measure(_meta_model(preset("nhl_convnextv2_tiny", num_classes=1000)))
    assert abs(convnext.params - 28_566_184) / 28_566_184 < 0.05  # paper: 28,566,184
    assert len(available_presets()) == 15
    with pytest.raises(ValueError, match="unknown preset"):
        preset("phl_tiny", num_classes=3)


def test_resnet50_reference_cost_matches_timm():
    with torch.device("meta"):
        resnet = timm.create_model("resnet50", num_classes=100).to("meta")
    cost = measure(resnet)
    assert cost.params == 25_557_032 - 900 * 2049  # timm's 1000-class count minus 900 fc rows
    assert 4.05 < cost.gmacs < 4.15  # ResNet50 at 224 px: 4.1 GMACs


def test_parse_ids():
    assert parse_ids("281-285,300") == [281, 282, 283, 284, 285, 300]
    assert parse_ids([281, "151-153", " 7 "]) == [281, 151, 152, 153, 7]
    for bad in ("a-b", "5-1", "1,,2", "-3", "3-", [True], 2.5):
        with pytest.raises(ValueError, match="--classes: .* is not an id or a range|expected ids and ranges"):
            parse_ids(bad, what="--classes")
    with pytest.raises(ValueError, match="unknown id 10, expected 0..9"):
        parse_ids("8-10", limit=10)


def test_cost_cli_reports_the_cat_cutout(capsys):
    result = main(get_args_parser().parse_args(["--preset", "nhl_resnet50", "--num-classes", "100",
                                                "--classes", "0-4"]))
    assert result["cutout"]["params"] < result["full"]["params"]
    assert result["cutout"]["macs"] < result["full"]["macs"]
    assert "| GMACs |" in result["tables"][0]
    assert cli(["--classes", "5-1"]) == 2
    assert capsys.readouterr().err == "error: --classes: '5-1' is not an id or a range like '281-285'\n"
