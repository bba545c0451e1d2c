"""Training engine contracts on tiny SeqPar models (CPU): exact resume, frozen trunk, DDP, dry run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from vision import load_seqpar
from vision.data.synthetic import generate
from vision.training import DivergedError, TrainConfig, train
from vision.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"backbone": "resnet18", "split_point": "layer1", "branch_channels": [8], "branch_depth": [1],
              "branch_stride": [2]}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, train_per_class=4, val_per_class=3, size=32, seed=1)  # 40 train, 30 val
    return root


def tiny_raw(root: Path, out: Path, **sections) -> dict:
    raw = {
        "data": {"root": str(root), "input_size": 32, "batch_size": 8, "workers": 0,
                 "augment": {"auto_augment": "rand-m9-mstd0.5", "scale": [0.5, 1.0]}},
        "model": dict(TINY_MODEL),
        "optim": {"optimizer": "sgd", "lr": 0.05, "epochs": 2, "warmup_epochs": 0.5, "label_smoothing": 0.1},
        "run": {"output_dir": str(out), "amp": "none", "channels_last": True, "log_every_steps": 1},
    }
    for name, values in sections.items():
        raw[name].update(values)
    return raw


def test_interrupted_and_resumed_run_equals_uninterrupted(synthetic, tmp_path):
    torch.set_num_threads(1)
    full = train(TrainConfig.from_dict(tiny_raw(synthetic, tmp_path / "full")), progress=False)
    assert full.epochs_done == 2 and full.global_step == 10 and not full.stopped_early

    cfg = TrainConfig.from_dict(tiny_raw(synthetic, tmp_path / "cut"))
    first = train(cfg, stop_after_steps=3, progress=False)  # mid epoch 1
    assert first.stopped_early and first.global_step == 3 and first.model_dir is None
    ckpt = load_checkpoint(tmp_path / "cut" / "last.ckpt")
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]) == (0, 3, 3)
    # resume with data-loader workers: augmentation is seeded per sample, so workers do not matter
    cfg_workers = TrainConfig.from_dict(tiny_raw(synthetic, tmp_path / "cut", data={"workers": 1}))
    second = train(cfg_workers, resume=tmp_path / "cut" / "last.ckpt", stop_after_steps=7, progress=False)  # mid epoch 2
    assert second.stopped_early and second.epochs_done == 1
    last = train(cfg, resume=tmp_path / "cut" / "last.ckpt", progress=False)
    assert last.global_step == 10 and last.epochs_done == 2

    a = load_seqpar(full.model_dir).state_dict()
    b = load_seqpar(last.model_dir).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_full = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    log_cut = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    keys = ("epoch", "global_step", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_images")
    assert [[r[k] for k in keys] for r in log_full] == [[r[k] for k in keys] for r in log_cut]
    opt_a = load_checkpoint(tmp_path / "full" / "last.ckpt")["optimizer"]["state"]
    opt_b = load_checkpoint(tmp_path / "cut" / "last.ckpt")["optimizer"]["state"]
    assert all(torch.equal(opt_a[i]["momentum_buffer"], opt_b[i]["momentum_buffer"]) for i in opt_a)
    assert (tmp_path / "full" / "best.ckpt").is_file()

    model = load_seqpar(full.model_dir)
    assert model.config.class_names[0] == "0_circle_red_solid" and model.config.class_ids == tuple(range(10))
    assert model.config.metadata["train_config"]["optim"]["epochs"] == 2

    changed = TrainConfig.from_dict(tiny_raw(synthetic, tmp_path / "cut", optim={"lr": 0.1}))
    with pytest.raises(ValueError, match=r"cannot resume: .*optim.lr"):
        train(changed, resume=tmp_path / "cut" / "last.ckpt", progress=False)


def test_frozen_trunk_trains_only_branches(synthetic, tmp_path):
    torch.set_num_threads(1)
    from vision import SeqParConfig, build_seqpar

    donor = build_seqpar(SeqParConfig(num_classes=10, **{k: tuple(v) if isinstance(v, list) else v
                                                         for k, v in TINY_MODEL.items()}))
    weights = tmp_path / "trunk.safetensors"
    save_file({k: v.contiguous() for k, v in donor.trunk.body.state_dict().items()}, str(weights))
    raw = tiny_raw(synthetic, tmp_path / "frozen", model={"freeze_trunk": True, "weights": str(weights)},
                   optim={"epochs": 1})
    result = train(TrainConfig.from_dict(raw), progress=False)
    model = load_seqpar(result.model_dir)
    trunk, ref = model.trunk.body.state_dict(), donor.trunk.body.state_dict()
    assert all(torch.equal(trunk[k], ref[k]) for k in ref)  # weights AND BN running stats untouched
    branch_before = {k: v for k, v in donor.state_dict().items() if not k.startswith("trunk.")}
    branch_after = model.state_dict()
    assert any(not torch.equal(branch_after[k], v) for k, v in branch_before.items())
    opt = load_checkpoint(tmp_path / "frozen" / "last.ckpt")["optimizer"]
    n_opt = sum(len(g["params"]) for g in opt["param_groups"])
    assert n_opt == sum(1 for p in model.parameters()) - sum(1 for _ in model.trunk.parameters())

    no_weights = tiny_raw(synthetic, tmp_path / "x", model={"freeze_trunk": True})
    with pytest.raises(ValueError, match="freeze_trunk needs model.weights"):
        train(TrainConfig.from_dict(no_weights), progress=False)


def test_dry_run_writes_nothing_and_bad_inputs_fail_clearly(synthetic, tmp_path):
    torch.set_num_threads(1)
    result = train(TrainConfig.from_dict(tiny_raw(synthetic, tmp_path / "dry")), dry_run=True, progress=False)
    assert result.global_step == 2 and result.final_val["images"] == 16 and not (tmp_path / "dry").exists()
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(TrainConfig.from_dict(tiny_raw(synthetic, tmp_path / "b", data={"batch_size": 64})), progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(TrainConfig.from_dict(tiny_raw(tmp_path / "nowhere", tmp_path / "c")), progress=False)


def test_class_filter_and_corrupt_images(synthetic, tmp_path, capsys):
    torch.set_num_threads(1)
    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    (data / "train" / "6_cross_green_dots" / "00001.png").write_bytes(b"truncated")
    raw = tiny_raw(data, tmp_path / "sub", data={"classes": "5-9", "batch_size": 4}, optim={"epochs": 1})
    raw["model"] = {"arch": "timm", "name": "test_resnet"}
    result = train(TrainConfig.from_dict(raw), progress=False)
    assert result.classes["class_ids"] == [0, 1, 2, 3, 4]  # non-wnid folders: positions within the subset
    assert result.classes["folders"][0] == "5_triangle_yellow_dots" and result.global_step == 5
    assert result.skipped_images == 1 and "skipped 1 unreadable training image" in capsys.readouterr().err
    assert json.loads((tmp_path / "sub" / "log.jsonl").read_text())["skipped_images"] == 1


def test_ddp_two_cpu_processes_reduce_metrics_exactly(synthetic, tmp_path):
    """torchrun --nproc_per_node 2 with gloo: rank-0 artefacts, no duplicated val images, exact reduction."""
    raw = tiny_raw(synthetic, tmp_path / "ddp", optim={"epochs": 1}, data={"batch_size": 4})
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vision.train", "--config", str(config), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(x) for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1  # only rank 0 writes
    assert log[0]["global_step"] == 40 // 2 // 4 and log[0]["val_images"] == 30  # 15 per rank, none padded

    from vision.eval import evaluate

    report = evaluate(tmp_path / "ddp" / "model", synthetic, workers=0)
    assert report.accuracy.images == 30 and report.accuracy.top1 == log[0]["val_top1"]


def test_diverging_loss_stops_with_a_clear_error(synthetic, tmp_path):
    torch.set_num_threads(1)
    raw = tiny_raw(synthetic, tmp_path / "nan", optim={"lr": 1e30, "epochs": 1, "warmup_epochs": 0})
    with pytest.raises(DivergedError, match="training loss became (nan|inf|-inf) by step"):
        train(TrainConfig.from_dict(raw), progress=False)
