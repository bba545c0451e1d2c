"""Datasets, synthetic set, checkpoints and config parsing of the training engine (no model needed)."""

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vision.data import eval_transform, train_transform
from vision.data.folder import EpochSampler, ImageFolderDataset, class_set, collate, load_splits, select_classes
from vision.data.synthetic import CLASSES, class_folder, generate
from vision.training import TrainConfig, load_config
from vision.training.checkpoint import load_checkpoint, save_checkpoint
from vision.training.engine import lr_factor

DATA_CONFIG = {"input_size": (3, 32, 32), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
               "crop_pct": 1.0, "crop_mode": "center", "interpolation": "bicubic"}

REPO = Path(__file__).resolve().parents[1]


def _img(path: Path, value: int = 128, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_wnid_folders_map_to_imagenet_indices_and_names():
    cs = class_set(["n01440764", "n02123045"])  # tench, tabby
    assert cs.imagenet and cs.class_ids == (0, 281)
    assert cs.class_names[1] == "tabby, tabby cat"


def test_other_folders_get_positions():
    cs = class_set(["b_cat", "a_dog"])
    assert not cs.imagenet and cs.class_ids == (0, 1) and cs.class_names == ("b_cat", "a_dog")


def test_class_filter_and_ranges():
    folders = ["a", "b", "c", "d"]
    assert select_classes(folders, [3, "a"]) == ["a", "d"]
    with pytest.raises(ValueError, match="out of range"):
        select_classes(folders, [4])
    with pytest.raises(ValueError, match="not a class folder"):
        select_classes(folders, ["zebra"])


def test_missing_and_empty_folders_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_splits(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_splits(tmp_path)
    _img(tmp_path / "train" / "n01440764" / "a.png")
    _img(tmp_path / "train" / "n02123045" / "a.png")
    _img(tmp_path / "val" / "n01440764" / "a.png")
    with pytest.raises(ValueError, match="classes missing from .*val: n02123045"):
        load_splits(tmp_path)
    (tmp_path / "val" / "n02123045").mkdir()
    cs = load_splits(tmp_path)
    with pytest.raises(ValueError, match="contains no images"):
        ImageFolderDataset(tmp_path / "val", cs)


def test_corrupt_images_are_replaced_and_counted(tmp_path, caplog):
    root = tmp_path / "train"
    _img(root / "a" / "0.png", 10)
    (root / "a" / "1.png").write_bytes(b"not an image")
    _img(root / "b" / "0.png", 200)
    ds = ImageFolderDataset(root, class_set(["a", "b"]), eval_transform({**DATA_CONFIG, "input_size": (3, 8, 8)}))
    with caplog.at_level(logging.WARNING):
        images, targets, skipped = collate([ds[i] for i in range(len(ds))])
    assert skipped == 1 and targets.tolist() == [0, 1, 1]  # the corrupt 'a' image became the next readable one
    assert "1.png" in caplog.text
    (root / "b" / "0.png").write_bytes(b"")
    (root / "a" / "0.png").write_bytes(b"")
    with pytest.raises(ValueError, match="consecutive unreadable images"):
        ds[0]


def test_sampler_is_seeded_sharded_and_resumable():
    full = list(EpochSampler(10, shuffle=True, seed=3))
    assert sorted(i for i, _ in full) == list(range(10)) and full == list(EpochSampler(10, shuffle=True, seed=3))
    s = EpochSampler(10, shuffle=True, seed=3)
    s.set_epoch(0, start=4)
    assert list(s) == full[4:]
    ranks = [list(EpochSampler(11, shuffle=True, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 5 and not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}
    val = [list(EpochSampler(11, shuffle=False, rank=r, world_size=2, drop_last=False)) for r in range(2)]
    assert sorted(i for r in val for i, _ in r) == list(range(11))


def test_augmentation_is_a_function_of_seed_epoch_index(tmp_path):
    generate(tmp_path, train_per_class=1, val_per_class=1, size=32)
    cs = class_set([class_folder(c) for c in range(10)])
    ds = ImageFolderDataset(tmp_path / "train", cs, train_transform(DATA_CONFIG, {"auto_augment": "rand-m9-mstd0.5"}), seed=0)
    torch.manual_seed(123)
    a = ds[(3, 1)][0]
    torch.manual_seed(999)
    assert torch.equal(a, ds[(3, 1)][0])
    assert not torch.equal(a, ds[(3, 2)][0])


def test_synthetic_set_is_deterministic(tmp_path):
    def digest(root):
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*.png")))).hexdigest()

    spec = generate(tmp_path / "a", train_per_class=2, val_per_class=1, size=24, seed=7)
    generate(tmp_path / "b", train_per_class=2, val_per_class=1, size=24, seed=7)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert len(list((tmp_path / "a").rglob("*.png"))) == 30 and len(spec.classes) == len(CLASSES) == 10
    assert len(set(CLASSES)) == 10
    generate(tmp_path / "c", train_per_class=2, val_per_class=1, size=24, seed=8)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    with pytest.raises(ValueError, match="size must be"):
        generate(tmp_path / "d", size=8)


def test_checkpoint_round_trip_is_exact_and_atomic(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
             "tuple": (1, 2.5, None), "epoch": 3}
    path = save_checkpoint(state, tmp_path / "last.ckpt")
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["tuple"] == (1, 2.5, None)
    assert torch.equal(back["rng"], state["rng"])
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])
    with pytest.raises(ValueError, match="only tensors"):
        save_checkpoint({"bad": object()}, path)
    assert load_checkpoint(path)["epoch"] == 3  # failed write left the old checkpoint intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp files left behind
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint"):
        load_checkpoint(tmp_path / "junk.ckpt")


def test_config_parsing_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {root: /x}\nmodel: {arch: timm, name: resnet18}\noptim: {lr: 0.1}\n")
    cfg = load_config(path, ["optim.lr=0.05", "data.classes=[0, 2]", "run.amp=bf16"])
    assert cfg.optim.lr == 0.05 and cfg.data.classes == [0, 2] and cfg.run.amp == "bf16"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lrr'\] in config section 'optim'"):
        load_config(path, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(path, ["lr=1"])
    swapped = load_config(path, ["model={backbone: resnet18, split_point: layer2, branch_channels: [8]}"])
    assert swapped.model == {"backbone": "resnet18", "split_point": "layer2", "branch_channels": [8]}
    with pytest.raises(ValueError, match="run.amp must be one of"):
        load_config(path, ["run.amp=fp8"])
    with pytest.raises(ValueError, match="data.root is required"):
        load_config(path, ["data.root="])


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, warmup_steps=4, total_steps=14, min_ratio=0.1) for s in range(15)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == 1.0 and abs(f[9] - 0.55) < 1e-12 and f[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[4:], f[5:]))


def test_every_shipped_config_parses_and_names_real_models():
    import timm

    from vision import Hierarchy
    from vision.presets import available_presets, preset

    configs = sorted((REPO / "configs").rglob("*.yaml"))
    configs = [c for c in configs if c.parent.name not in ("_base", "hierarchies")]
    assert len(configs) >= 30
    for path in configs:
        cfg = load_config(path)
        model = cfg.model
        if model.get("arch") == "timm":
            assert timm.is_model(model["name"]), path
        else:
            assert "preset" not in model or model["preset"] in available_presets(), path
        assert cfg.data.augment.get("auto_augment") == "rand-m9-mstd0.5", path
        if "hierarchy_file" in model:  # a shipped tree fits its preset (validated without building weights)
            tree = Hierarchy.load(REPO / model["hierarchy_file"], 1000).tree
            assert preset(model["preset"], num_classes=1000, hierarchy=tree).hierarchy == tree


def test_build_model_reads_hierarchy_files_and_presets(tmp_path):
    from vision.training.models import build_model

    tree = {"name": "root", "children": [{"name": "g0", "children": [0, 2]}, {"name": "g1", "children": [1, 3]}]}
    path = tmp_path / "tree.yaml"
    path.write_text(yaml.safe_dump(tree))
    classes = class_set(["a", "b", "c", "d"])
    spec = {"backbone": "resnet18", "split_point": "layer1", "topology": "nhl", "hierarchy_file": str(path),
            "branch_channels": [8, 4]}
    model = build_model(spec, classes, {"note": 1}, image_size=32, augment={"crop_pct": 1.0, "auto_augment": "x"})
    assert model.config.hierarchy == tree and model.config.class_names == ("a", "b", "c", "d")
    assert model.config.image_size == 32 and model.config.metadata == {"note": 1}
    assert model.data_config()["crop_pct"] == 1.0  # the eval keys of data.augment are the model's preprocessing
    with pytest.raises(ValueError, match="not both"):
        build_model({**spec, "hierarchy": tree}, classes, {})
    with pytest.raises(ValueError, match="set from the dataset"):
        build_model({**spec, "num_classes": 4}, classes, {})
    with pytest.raises(ValueError, match="unknown preset"):
        build_model({"preset": "nope"}, classes, {})
    with pytest.raises(ValueError, match="model.arch must be"):
        build_model({"arch": "keras"}, classes, {})
