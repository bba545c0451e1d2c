"""GPU check: 2 epochs of PHL-ResNet50 vs. plain ResNet50 on the synthetic set at 224 px with AMP.

    python -m benchmarks.gpu_train_check --out /tmp/gpu_check      # est. 2-4 min on one H100
    python -m benchmarks.gpu_train_check --out /tmp/gpu_check --train-per-class 400 --val-per-class 50
                                                   # ran in about 75 s on one H200 (torch 2.11, 2026-12-04)
    python -m benchmarks.gpu_train_check --device cpu --out /tmp/gpu_check_cpu --size 32 --epochs 1 \
        --train-per-class 4 --val-per-class 2 --batch-size 8 --workers 0 --amp none --bench-steps 1
                                                   # a functional check of the script on the CPU (no figures)

For each model: the engine's end-to-end training throughput (images/s of the last epoch, data loading
included), the model-only throughput (forward + backward + optimizer step on resident tensors,
median of 3 timed runs of ``--bench-steps`` steps, ``benchmarks.common``), peak GPU memory of the training
run, and val top-1 after the last epoch. The PHL run is then evaluated with ``vision.eval.evaluate``
(cutouts lower/upper, gain sweep). Writes ``gpu_train_check.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import add_json_argument, cell, machine, markdown_table, timing, write_json
from vision.data.folder import ClassSet, load_splits
from vision.data.synthetic import generate
from vision.eval import evaluate
from vision.training import TrainConfig, train
from vision.training.models import build_model
from xmcommon.cli import exit_process, run_cli
from xmcommon.files import atomic_write_text


def _config(root: Path, out: Path, model: dict, args: argparse.Namespace) -> TrainConfig:
    return TrainConfig.from_dict({
        "data": {"root": str(root), "input_size": args.size, "batch_size": args.batch_size, "workers": args.workers,
                 "augment": {"auto_augment": "rand-m9-mstd0.5", "interpolation": "bicubic"}},
        "model": model,
        "optim": {"optimizer": "sgd", "lr": 0.2, "epochs": args.epochs, "warmup_epochs": 0.5, "weight_decay": 5e-5},
        "run": {"output_dir": str(out), "amp": args.amp, "channels_last": True, "compile": args.compile,
                "device": args.device, "log_every_steps": 10},
    })


def _build(cfg: TrainConfig, classes: ClassSet) -> torch.nn.Module:
    return build_model(cfg.model, classes, {}, image_size=cfg.data.input_size, augment=cfg.data.augment)


def model_only_throughput(cfg: TrainConfig, classes: ClassSet, steps: int, device: torch.device) -> float:
    """Images/s of forward + backward + SGD step on a resident random batch (median of 3 runs of ``steps`` steps)."""
    model = _build(cfg, classes).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    size = cfg.data.input_size
    x = torch.randn(cfg.data.batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(classes.class_ids), (cfg.data.batch_size,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[cfg.run.amp]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def steps_synced() -> None:
        for _ in range(steps):
            step()
        sync()

    # `timing` warms up with one untimed run of `steps` steps (cudnn autotuning); every run starts synchronised
    return steps * cfg.data.batch_size / (timing(steps_synced, runs=3, setup=sync).wall_ms / 1e3)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="GPU check: PHL-ResNet50 vs ResNet50 training throughput, memory and top-1.")
    p.add_argument("--out", default="runs/gpu_train_check")
    p.add_argument("--preset", default="phl_latesp_resnet50")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-per-class", type=int, default=800)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--amp", default="bf16", choices=["bf16", "fp16", "none"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--bench-steps", type=int, default=20)
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (functional check of the script)")
    add_json_argument(p)
    return p


def main(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("gpu_train_check needs a CUDA device (use --device cpu only for a functional check)")
    torch.backends.cudnn.benchmark = True
    cuda = device.type == "cuda"
    out = Path(args.out)
    data = out / f"synthetic{args.size}"
    t0 = time.perf_counter()
    if not (data / "synthetic.json").is_file():
        generate(data, train_per_class=args.train_per_class, val_per_class=args.val_per_class, size=args.size,
                 processes=min(16, os.cpu_count() or 1))
    print(f"synthetic set: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    models = {
        f"PHL-ResNet50 ({args.preset})": {"preset": args.preset},
        "ResNet50 (timm)": {"arch": "timm", "name": "resnet50"},
    }
    classes = load_splits(data)
    rows = []
    for label, model_cfg in models.items():
        run_dir = out / label.split()[0].lower()
        cfg = _config(data, run_dir, model_cfg, args)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t1 = time.perf_counter()
        result = train(cfg, progress=False)
        wall = time.perf_counter() - t1
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        rows.append({"model": label, "params": sum(p.numel() for p in _build(cfg, classes).parameters()),
                     "train_img_s_last_epoch": log[-1]["images_per_s"],
                     "model_only_img_s": model_only_throughput(cfg, classes, args.bench_steps, device),
                     "peak_gpu_mem_gib": peak, "val_top1": result.final_val["top1"], "wall_s": wall,
                     "model_dir": result.model_dir})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    report = evaluate(rows[0]["model_dir"], data, subsets=["lower:0-4", "upper:5-9"], gains=[1.0, 1.5, 2.0, 3.0],
                      batch_size=args.batch_size, workers=args.workers, device=args.device, out=out / "eval_phl")
    header = ("model", "params", f"train img/s (epoch {args.epochs}, end-to-end)", "model-only img/s",
              "peak GPU mem (GiB)", "val top-1", "wall (s)")
    table = markdown_table(header, ([r["model"], f"{r['params']:,}", f"{r['train_img_s_last_epoch']:.0f}",
                                     f"{r['model_only_img_s']:.0f}",
                                     cell(r["peak_gpu_mem_gib"], ".2f"),
                                     f"{r['val_top1']:.1f}", f"{r['wall_s']:.0f}"] for r in rows), "lrrrrrr")
    device_name = torch.cuda.get_device_name(device) if cuda else "CPU (functional check only)"
    result = {
        "device": device_name, "machine": machine(), "amp": args.amp, "batch_size": args.batch_size,
        "train_images": args.train_per_class * len(classes.class_ids), "val_images": args.val_per_class * len(classes.class_ids),
        "size": args.size, "epochs": args.epochs, "rows": rows, "table": table,
        "phl_over_resnet50_model_only": rows[0]["model_only_img_s"] / rows[1]["model_only_img_s"],
        "evaluation": report.to_dict()["subsets"], "evaluation_report": (out / "eval_phl" / "report.md").read_text(),
    }
    atomic_write_text(out / "gpu_train_check.md", render(result, args) + "\n")
    write_json(args.json, result)
    return result


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    head = (f"device: {result['device']} | torch {result['machine']['torch']} | amp {result['amp']} | batch "
            f"{result['batch_size']} | {result['train_images']} train / {result['val_images']} val images, "
            f"{result['size']} px, {result['epochs']} epochs")
    ratio = f"PHL / ResNet50 model-only throughput ratio: {result['phl_over_resnet50_model_only']:.2f}"
    return "\n".join([head, "", result["table"], "", ratio, "", result["evaluation_report"]])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
