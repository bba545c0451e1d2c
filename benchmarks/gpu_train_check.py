"""GPU check: 2 epochs of PHL-ResNet50 vs. plain ResNet50 on the synthetic set at 224 px with AMP.

    python benchmarks/gpu_train_check.py --out /tmp/gpu_check      # est. 2-4 min on one H100 (not yet run)

For each model: the engine's end-to-end training throughput (images/s of epoch 2, data loading
included), the model-only throughput (forward + backward + optimizer step on resident tensors,
median of 3 timed runs), peak GPU memory of the training run, and val top-1 after 2 epochs.
The PHL run is then evaluated with `vision.evaluate` (cutouts lower/upper, gain sweep).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision.data import load_splits  # noqa: E402
from vision.evaluate import evaluate  # noqa: E402
from vision.modelio import build_model  # noqa: E402
from vision.synthetic import generate  # noqa: E402
from vision.train import TrainConfig, train  # noqa: E402


def _config(root: Path, out: Path, model: dict, args) -> TrainConfig:
    return TrainConfig.from_dict({
        "data": {"root": str(root), "input_size": args.size, "batch_size": args.batch_size, "workers": args.workers,
                 "augment": {"auto_augment": "rand-m9-mstd0.5", "interpolation": "bicubic"}},
        "model": model,
        "optim": {"optimizer": "sgd", "lr": 0.2, "epochs": args.epochs, "warmup_epochs": 0.5, "weight_decay": 5e-5},
        "run": {"output_dir": str(out), "amp": args.amp, "channels_last": True, "compile": args.compile,
                "device": args.device, "log_every_steps": 10},
    })


def model_only_throughput(cfg: TrainConfig, classes, steps: int, device: torch.device) -> float:
    """Images/s of forward + backward + SGD step on a resident random batch (median of 3 runs)."""
    model = build_model(cfg.model, classes, {}).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    size = cfg.data.input_size
    x = torch.randn(cfg.data.batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(classes.class_ids), (cfg.data.batch_size,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[cfg.run.amp]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(5):
        step()
    rates = []
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        rates.append(steps * cfg.data.batch_size / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_train_check needs a CUDA device (use --device cpu only for a functional check)")
    torch.backends.cudnn.benchmark = True
    cuda = device.type == "cuda"
    out = Path(args.out)
    data = out / f"synthetic{args.size}"
    t0 = time.perf_counter()
    if not (data / "synthetic.json").is_file():
        generate(data, train_per_class=args.train_per_class, val_per_class=args.val_per_class, size=args.size,
                 processes=min(16, os.cpu_count() or 1))
    print(f"synthetic set: {time.perf_counter() - t0:.1f} s", flush=True)
    models = {
        f"PHL-ResNet50 ({args.preset})": {"preset": args.preset},
        "ResNet50 (timm)": {"arch": "timm", "name": "resnet50"},
    }
    rows = []
    for label, model_cfg in models.items():
        run_dir = out / label.split()[0].lower()
        cfg = _config(data, run_dir, model_cfg, args)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t1 = time.perf_counter()
        result = train(cfg, progress=False)
        wall = time.perf_counter() - t1
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        classes = load_splits(data)
        rows.append({"model": label, "params": sum(p.numel() for p in build_model(model_cfg, classes, {}).parameters()),
                     "train_img_s_epoch2": log[-1]["images_per_s"],
                     "model_only_img_s": model_only_throughput(cfg, classes, args.bench_steps, device),
                     "peak_gpu_mem_gib": peak, "val_top1": result.final_val["top1"], "wall_s": wall,
                     "model_dir": result.model_dir})
        print(json.dumps(rows[-1]), flush=True)
    report = evaluate(rows[0]["model_dir"], data, subsets=["lower:0-4", "upper:5-9"], gains=[1.0, 1.5, 2.0, 3.0],
                      batch_size=args.batch_size, workers=args.workers, device=args.device, out=out / "eval_phl")
    name = torch.cuda.get_device_name() if cuda else "CPU (functional check only)"
    lines = [f"device: {name} | torch {torch.__version__} | amp {args.amp} | batch {args.batch_size} | "
             f"{args.train_per_class * 10} train / {args.val_per_class * 10} val images, {args.size} px, {args.epochs} epochs", "",
             "| model | params | train img/s (epoch 2, end-to-end) | model-only img/s | peak GPU mem (GiB) | val top-1 | wall (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['model']} | {r['params']:,} | {r['train_img_s_epoch2']:.0f} | {r['model_only_img_s']:.0f} | "
              f"{r['peak_gpu_mem_gib']:.2f} | {r['val_top1']:.1f} | {r['wall_s']:.0f} |" for r in rows]
    ratio = rows[0]["model_only_img_s"] / rows[1]["model_only_img_s"]
    lines += ["", f"PHL / ResNet50 model-only throughput ratio: {ratio:.2f}", "",
              (out / "eval_phl" / "report.md").read_text()]
    text = "\n".join(lines)
    (out / "gpu_train_check.md").write_text(text)
    print(text)
    return {"rows": rows, "evaluation": report.to_dict()["subsets"]}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
