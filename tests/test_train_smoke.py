"""Reduced `benchmarks/train_smoke.py`: a tiny PHL learns the synthetic set, then cutouts and gains are evaluated."""

import importlib.util
from pathlib import Path

import torch

SMOKE = Path(__file__).resolve().parents[1] / "benchmarks" / "train_smoke.py"


def _smoke_module():
    spec = importlib.util.spec_from_file_location("train_smoke", SMOKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reduced_smoke_learns_and_evaluates(tmp_path):
    torch.set_num_threads(1)
    run = _smoke_module().smoke(tmp_path, train_per_class=16, val_per_class=6, epochs=3, gains=(1.0, 2.0))
    log, report = run["log"], run["report"]
    assert [r["epoch"] for r in log] == [1, 2, 3] and log[-1]["val_images"] == 60
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert report.accuracy.top1 == log[-1]["val_top1"]  # vision.evaluate agrees with the training loop
    assert report.accuracy.top1 >= 40.0  # chance is 10 %
    assert [s.name for s in report.subsets] == ["lower", "upper"]
    assert all(s.cutout_max_logit_diff < 1e-4 and s.cutout_params < s.full_params for s in report.subsets)
    assert report.gain_sweep.top1[0] == report.accuracy.top1
