"""Smoke proof on the CPU: train a tiny PHL on the synthetic 10-class set, then evaluate it.

    python benchmarks/train_smoke.py --out /tmp/train_smoke          # a few minutes on 2 CPU cores

Generates the procedural shapes x colors x textures set, trains `configs/synthetic/phl_tiny.yaml`
(ResNet18 trunk up to layer2, one small bottleneck branch per class; RandAugment, label
smoothing, AdamW + warmup + cosine), then runs `vision.evaluate`: top-1, Table-2-style cutouts
(lower 0-4 / upper 5-9) and the true-class gain sweep. Prints the epoch log and the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision.evaluate import evaluate  # noqa: E402
from vision.synthetic import generate  # noqa: E402
from vision.train import load_config, train  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "phl_tiny.yaml"


def smoke(out: Path, *, train_per_class: int, val_per_class: int, epochs: int, size: int = 32,
          gains: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)) -> dict:
    """Generate, train and evaluate; returns the training result, epoch log, report and timings."""
    t0 = time.perf_counter()
    data = out / "data"
    if not (data / "synthetic.json").is_file():
        generate(data, train_per_class=train_per_class, val_per_class=val_per_class, size=size)
    t_data = time.perf_counter() - t0
    cfg = load_config(CONFIG, [f"data.root={data}", f"optim.epochs={epochs}", f"data.input_size={size}",
                               f"run.output_dir={out / 'run'}"])
    t1 = time.perf_counter()
    result = train(cfg, progress=False)
    t_train = time.perf_counter() - t1
    t2 = time.perf_counter()
    report = evaluate(result.model_dir, data, subsets=["lower:0-4", "upper:5-9"], gains=list(gains), workers=1,
                      out=out / "eval")
    t_eval = time.perf_counter() - t2
    log = [json.loads(x) for x in (out / "run" / "log.jsonl").read_text().splitlines()]
    return {"result": result, "log": log, "report": report,
            "seconds": {"data": t_data, "train": t_train, "evaluate": t_eval}}


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    run = smoke(out, train_per_class=args.train_per_class, val_per_class=args.val_per_class, epochs=args.epochs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (shared CPU; timings are indicative)")
    print("| epoch | train loss | train top-1 | val top-1 | images/s | epoch s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in run["log"]:
        print(f"| {r['epoch']} | {r['train_loss']:.3f} | {r['train_top1']:.1f} | {r['val_top1']:.1f} | "
              f"{r['images_per_s']:.0f} | {r['epoch_time_s']:.1f} |")
    s = run["seconds"]
    print(f"\ndata {s['data']:.1f} s, training {s['train']:.1f} s, evaluation {s['evaluate']:.1f} s\n")
    print((out / "eval" / "report.md").read_text())
    final = run["result"].final_val["top1"]
    print(f"final val top-1 {final:.2f} % ({'PASS' if final >= 90 else 'FAIL'}: target >= 90 %)")
    return {"final_val_top1": final, "seconds": s, "report": run["report"].to_dict()}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/train_smoke")
    p.add_argument("--train-per-class", type=int, default=120)
    p.add_argument("--val-per-class", type=int, default=40)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
