"""Smoke proof on the CPU: train a tiny PHL on the synthetic 10-class set, then evaluate it.

    python -m benchmarks.train_smoke --out /tmp/train_smoke          # a few minutes on 2 CPU cores
    python -m benchmarks.train_smoke --out /tmp/train_smoke_quick --train-per-class 16 --val-per-class 6 --epochs 2

Generates the procedural shapes x colors x textures set (``vision.data.synthetic``), trains
``configs/synthetic/phl_tiny.yaml`` (ResNet18 trunk up to layer2, one small bottleneck branch per class;
RandAugment, label smoothing, AdamW + warmup + cosine) with ``vision.training``, then runs
``vision.eval.evaluate``: top-1, Table-2-style cutouts (lower 0-4 / upper 5-9) and the true-class gain
sweep. Reports the epoch log and the evaluation; passes at a final val top-1 >= 90 %.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import add_json_argument, machine, machine_line, markdown_table, write_json
from vision.data.synthetic import generate
from vision.eval import evaluate
from vision.training import load_config, train
from xmcommon.cli import exit_process, run_cli

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "synthetic" / "phl_tiny.yaml"
TARGET_TOP1 = 90.0


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


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="CPU smoke proof: train a tiny PHL on the synthetic set, then evaluate it.")
    p.add_argument("--out", default="runs/train_smoke")
    p.add_argument("--train-per-class", type=int, default=120)
    p.add_argument("--val-per-class", type=int, default=40)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    add_json_argument(p)
    return p


def main(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    run = smoke(out, train_per_class=args.train_per_class, val_per_class=args.val_per_class, epochs=args.epochs)
    final = run["result"].final_val["top1"]
    rows = [{k: r[k] for k in ("epoch", "train_loss", "train_top1", "val_top1", "images_per_s", "epoch_time_s")}
            for r in run["log"]]
    table = markdown_table(("epoch", "train loss", "train top-1", "val top-1", "images/s", "epoch s"),
                           ([r["epoch"], f"{r['train_loss']:.3f}", f"{r['train_top1']:.1f}", f"{r['val_top1']:.1f}",
                             f"{r['images_per_s']:.0f}", f"{r['epoch_time_s']:.1f}"] for r in rows), "rrrrrr")
    result = {"machine": machine(), "final_val_top1": final, "target_top1": TARGET_TOP1, "passed": final >= TARGET_TOP1,
              "seconds": run["seconds"], "rows": rows, "table": table, "report": run["report"].to_dict(),
              "evaluation_report": (out / "eval" / "report.md").read_text()}
    write_json(args.json, result)
    return result


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    s = result["seconds"]
    verdict = (f"final val top-1 {result['final_val_top1']:.2f} % ({'PASS' if result['passed'] else 'FAIL'}: "
               f"target >= {result['target_top1']:g} %)")
    return "\n".join([f"{machine_line(result['machine'])} (shared CPU; timings are indicative)", "", result["table"], "",
                      f"data {s['data']:.1f} s, training {s['train']:.1f} s, evaluation {s['evaluate']:.1f} s", "",
                      result["evaluation_report"], verdict])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
