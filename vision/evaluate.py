"""``python -m vision.evaluate``: accuracy, Table-2-style cutouts and the top-down attention gain sweep.

    python -m vision.evaluate --model runs/x/model --data data/synthetic \
        --subsets lower:0-4 upper:5-9 --gains 1 1.5 2 3 --out runs/x/eval

Outputs in `--out`: `report.md` (Markdown tables), `results.json`, `per_class.csv`, `subsets.csv`,
`gains.csv`, `gain_curve.png` and the per-image journal `per_image*.jsonl` (`--resume` continues an
interrupted run from it). Under torchrun the batches are shared out over the processes and rank 0 writes
the report, which is the single-process one:

    torchrun --nproc_per_node 4 -m vision.evaluate --model runs/x/model --data data/synthetic --out runs/x/eval

Subsets name output positions (`lower:0-4`) or come from a YAML file
mapping names to lists of positions (ints), class folder names / wnids (strings) or a range string
("0-4,7"). The library is :mod:`vision.eval.evaluation`.
"""

from __future__ import annotations

import argparse

from xmcommon.cli import exit_process, render_json, run_cli

from .distributed import is_main_process, teardown_distributed
from .eval.evaluation import evaluate


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate a SeqPar model: accuracy, cutouts (Table 2), attention gain sweep.")
    p.add_argument("--model", required=True, help="model folder (save_pretrained output, e.g. runs/x/model) or 'default'")
    p.add_argument("--data", required=True, help="ImageFolder root (with --split sub-folder) or a class-folder tree")
    p.add_argument("--split", default="val")
    p.add_argument("--subsets", nargs="*", default=[], help="name:positions, e.g. lower:0-4 upper:5-9")
    p.add_argument("--subsets-file", help="YAML mapping subset names to class lists")
    p.add_argument("--baseline", nargs="*", default=[], metavar="SUBSET=DIR",
                   help="a model trained only on that subset (vision.train with data.classes=...)")
    p.add_argument("--gains", nargs="*", type=float, default=[], help="gains for the true-class attention sweep")
    p.add_argument("--input-size", type=int, help="default: the model's training input size")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto, cuda (each torchrun process its local GPU) or cpu")
    p.add_argument("--out", help="output folder for report.md, results.json, CSV/PNG files and per_image*.jsonl")
    p.add_argument("--resume", action="store_true", help="skip the images already in --out's per_image*.jsonl")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop each process after N images (to test --resume)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(args: argparse.Namespace) -> dict:
    if args.resume and not args.out:
        raise ValueError("--resume needs --out (the folder that holds per_image*.jsonl)")
    baselines = {}
    for item in args.baseline:
        if "=" not in item:
            raise ValueError(f"--baseline {item!r} must look like SUBSET=DIR")
        name, path = item.split("=", 1)
        baselines[name] = path
    report = evaluate(args.model, args.data, split=args.split, subsets=args.subsets, subsets_file=args.subsets_file,
                      gains=args.gains, baselines=baselines, input_size=args.input_size, batch_size=args.batch_size,
                      workers=args.workers, device=args.device, out=args.out, resume=args.resume,
                      stop_after=args.stop_after, progress=not args.no_progress)
    return {"stopped": True, "out": args.out} if report is None else report.to_dict()


def _render(result: dict, args: argparse.Namespace) -> str | None:
    if not is_main_process():
        return None
    if result.get("stopped"):
        return f"stopped after --stop-after {args.stop_after} images per process; continue with --resume"
    return render_json({k: result[k] for k in ("accuracy", "subsets", "gain_sweep")})


def cli(argv: list[str] | None = None) -> int:
    try:
        return run_cli(get_args_parser(), main, argv, _render)
    finally:
        teardown_distributed()


if __name__ == "__main__":
    exit_process(cli())
