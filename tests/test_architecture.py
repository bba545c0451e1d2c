"""The architecture's contracts: a one-way import graph, registries, typed settings with migration,
shared-trunk cutouts that never change their parent, and atomic saves."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.vision_helpers import TREE, tiny_config, tiny_model
from vision import Calibration, Preprocessing, SeqParConfig, build_seqpar, load_seqpar
from vision.baseline import TimmClassifier
from vision.nn.blocks import BottleneckBlock, block_types, register_block
from vision.nn.trunk import BackboneFamily, backbone_family, register_backbone_family
from vision.zoo.weights import TrunkWeightSource, register_trunk_weights

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vision", "audio", "mappings", "crossmodal", "xmcommon")


def _imported_packages(package: str) -> set[str]:
    """The top-level project packages that the modules of ``package`` import (absolute imports)."""
    found = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            found |= {n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES}
    return found - {package}


def test_the_import_graph_is_one_way():
    """vision, audio and mappings never import each other; crossmodal composes them; xmcommon imports none."""
    assert _imported_packages("xmcommon") == set()
    for package in ("vision", "audio", "mappings"):
        assert _imported_packages(package) <= {"xmcommon"}, package
    assert _imported_packages("crossmodal") <= {"vision", "audio", "mappings", "xmcommon"}


def test_benchmarks_never_edit_sys_path():
    for path in (REPO / "benchmarks").glob("*.py"):
        assert "sys.path" not in path.read_text(encoding="utf-8"), path.name


@pytest.fixture
def private_registries(monkeypatch):
    """Registrations made by a test stay in that test."""
    import vision.nn.blocks
    import vision.nn.trunk
    import vision.zoo.weights

    for module, name in ((vision.nn.blocks, "_BLOCKS"), (vision.nn.trunk, "_FAMILIES"), (vision.zoo.weights, "_SOURCES")):
        monkeypatch.setattr(module, name, dict(getattr(module, name)))


def test_a_new_block_type_is_one_registered_class(private_registries):
    @register_block("test-bottleneck")
    class TestBlock(BottleneckBlock):
        pass

    assert "test-bottleneck" in block_types()
    model = tiny_model(block="test-bottleneck").eval()
    assert isinstance(model.levels[0].blocks[0], TestBlock)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.cutout([4, 5])(x), model(x)[:, [4, 5]], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="already registered"):
        register_block("test-bottleneck")(TestBlock)
    with pytest.raises(ValueError, match="block must be one of"):
        tiny_config(block="no-such-block")


def test_a_new_backbone_family_is_one_registered_entry(private_registries):
    register_backbone_family(BackboneFamily("test-resnet", ("test_resnet",), "bottleneck", "timm's test ResNet"))
    assert backbone_family("test_resnet").name == "test-resnet"
    config = SeqParConfig(backbone="test_resnet", split_point="layer2", num_classes=3, branch_channels=(8,))
    model = build_seqpar(config).eval()
    assert config.block == "bottleneck" and model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="unsupported backbone 'vgg16'; expected a timm ResNet .* test ResNet"):
        backbone_family("vgg16")


def test_a_new_trunk_weight_source_is_one_registered_entry(private_registries, tmp_path):
    donor = build_seqpar(tiny_config(tree=None, num_classes=3)).trunk.body.state_dict()
    register_trunk_weights(TrunkWeightSource("test-weights", "resnet18", lambda: dict(donor), "nothing to install"))
    model = build_seqpar(tiny_config(tree=None, num_classes=3, freeze_trunk=True, pretrained_trunk="test-weights"))
    model.trunk.body.load_state_dict(donor)
    model.save_pretrained(tmp_path)
    assert not any(k.startswith("trunk.") for k in load_file(tmp_path / "model.safetensors"))
    loaded = load_seqpar(tmp_path)
    assert all(torch.equal(v, donor[k]) for k, v in loaded.trunk.body.state_dict().items())
    with pytest.raises(ValueError, match="unknown pretrained_trunk 'nope'; registered sources: .*test-weights"):
        load_seqpar_config_with(tmp_path, pretrained_trunk="nope")


def load_seqpar_config_with(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))
    load_seqpar(directory)


def test_settings_are_typed_and_validated():
    config = tiny_config()
    assert config.preprocessing == Preprocessing.for_backbone("resnet18")  # timm's, written down
    assert config.data_config()["input_size"] == (3, 224, 224) and config.calibration == Calibration()
    for bad, message in [({"preprocessing": {"mean": (0.5,), "std": (1, 1, 1)}}, "3 finite numbers"),
                         ({"preprocessing": {"mean": (0, 0, 0), "std": (1, 1, 0)}}, "std must be positive"),
                         ({"preprocessing": {"mean": (0, 0, 0), "std": (1, 1, 1), "crop_pct": 1.5}}, "crop_pct"),
                         ({"calibration": {"level_gains": [1.0]}}, "one value .* per tree level: 3 levels"),
                         ({"calibration": {"temperatures": {"cutout": 0.0}}}, "temperatures must map mode names"),
                         ({"calibration": {"gains": 2}}, "unknown fields"),
                         ({"image_size": 0}, "image_size must be a positive integer")]:
        with pytest.raises(ValueError, match=message):
            tiny_config(**bad)
    round_trip = SeqParConfig.from_dict(json.loads(json.dumps(tiny_config(
        calibration={"level_gains": [None, 2.0, 1.5], "temperatures": {"cutout": 1.7}}).to_dict())))
    assert round_trip.calibration == Calibration((None, 2.0, 1.5), {"cutout": 1.7})


def test_old_saved_configs_migrate_on_load(tmp_path):
    """Version 1 kept preprocessing and calibration in the metadata; they load as the typed settings."""
    model = tiny_model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    old = {k: v for k, v in config.items() if k not in ("config_version", "preprocessing", "calibration")}
    old["metadata"] = {"data_config": {"mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0},
                       "calibration": {"level_gains": [None, 3.0, 1.25], "images": 14, "mode": "cutout+attend"},
                       "dataset": {"note": "provenance stays"}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = load_seqpar(tmp_path)
    assert loaded.config.preprocessing == Preprocessing((0.5,) * 3, (0.5,) * 3, 1.0, "center", "bicubic")
    assert loaded.config.calibration.level_gains == (None, 3.0, 1.25)
    assert loaded.config.metadata == {"calibration_run": {"images": 14, "mode": "cutout+attend"},
                                      "dataset": {"note": "provenance stays"}}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    trained = {**old, "metadata": {"train_config": {"data": {"augment": {"crop_pct": 0.9, "auto_augment": "x"}}}}}
    (tmp_path / "config.json").write_text(json.dumps(trained))
    assert load_seqpar(tmp_path).config.preprocessing.crop_pct == 0.9  # models trained by vision.train
    (tmp_path / "config.json").write_text(json.dumps({**config, "config_version": 99}))
    with pytest.raises(ValueError, match="config version 99 is not supported"):
        load_seqpar(tmp_path)


def test_shared_trunk_cutouts_never_change_their_parent():
    parent = tiny_model()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    cut = parent.cutout([4, 5], share_trunk=True)
    assert cut.shares_trunk and cut.trunk is parent.trunk and not cut.training
    for change in (lambda m: m.train(), lambda m: m.half(), lambda m: m.to(torch.float64), lambda m: m.float(),
                   lambda m: m.requires_grad_(True), lambda m: m.load_state_dict(m.state_dict())):
        with pytest.raises(RuntimeError, match="would change the parent"):
            change(cut)
    parent.train()
    cut.eval()  # allowed, and only for the cutout's own branches
    assert parent.trunk.training and parent.training
    parent.eval()
    assert all(v.dtype == torch.float32 for v in parent.state_dict().values() if v.is_floating_point())
    assert all(torch.equal(v, before[k]) for k, v in parent.state_dict().items())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(cut(x), parent(x)[:, [4, 5]], atol=1e-5, rtol=1e-5)
    own = parent.cutout([4, 5]).half()  # an independent cutout may change freely
    assert next(own.trunk.parameters()).dtype == torch.float16 and next(parent.trunk.parameters()).dtype == torch.float32


def test_baseline_saves_are_atomic(tmp_path, monkeypatch):
    model = TimmClassifier("test_resnet", [0, 1], ["a", "b"])
    model.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    import vision.baseline

    monkeypatch.setattr(vision.baseline, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        TimmClassifier("test_resnet", [0, 1], ["c", "d"]).save_pretrained(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing half-written, no temp files


def test_node_gains_come_from_the_models_own_tree():
    """A node gets the smallest gain of its classes when all of them are cued (one walker: vision.hierarchy)."""
    model = tiny_model().eval()
    assert model.node_gains({4: 2.0, 5: 3.0}) == {"c": 2.0}
    assert model.node_gains({0: 2.0, 1: 2.0, 2: 2.0, 3: 1.5, 4: 1.0, 5: 1.0}) == {"a": 2.0, "b": 1.0, "c": 1.0}
    assert model.hierarchy.leaves("b") == (3, 4, 5) and TREE["children"][1]["name"] == "b"


@pytest.mark.parametrize("damage", ["empty", "truncated", "random", "nan"])
def test_broken_weight_files_are_bad_input_naming_the_file(tmp_path, damage):
    """A damaged model.safetensors is a ValueError naming the file (the CLIs' exit 2), never an internal error."""
    from safetensors.torch import save_file

    model = tiny_model()
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    if damage == "empty":
        weights.write_bytes(b"")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "random":
        weights.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                          dtype=torch.uint8).numpy().tobytes())
    else:
        state = load_file(weights)
        state["levels.0.head.bias"] = torch.full_like(state["levels.0.head.bias"], float("nan"))
        save_file(state, str(weights))
    with pytest.raises(ValueError, match=str(weights)):
        load_seqpar(tmp_path)


def test_cutouts_of_a_moved_model_hold_everything_on_its_device():
    """A model on another device (here "meta", as a GPU would be): a cutout, shared trunk or not, holds every
    parameter and index buffer there (the shared-trunk cutout's tree-path index once stayed on the CPU)."""
    model = tiny_model().to("meta")
    for cut in (model.cutout([4, 5], share_trunk=True), model.cutout([4, 5])):
        assert {t.device.type for t in (*cut.parameters(), *cut.buffers())} == {"meta"}
