"""Fused branch execution against the per-branch reference loop, the trunk left out.

``benchmarks.cutout`` times whole models; a model and its loop run the same trunk module, which dominates a small
cutout's time, so there its "fused speed-up" is the trunk's run-to-run noise. Here both run on the same trunk
features: the fused levels (``SeqParModel.forward_branches``) against ``vision.nn.reference.BranchLoop``, interleaved,
median of ``--runs``, for the same models, cutouts and batches as ``benchmarks.cutout``.

    python -m benchmarks.branches --clock cpu --threads 1
    python -m benchmarks.branches --variants nhl_resnet50 --classes 1000 --batches 16 --runs 3
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from benchmarks.common import interleaved_timings, machine, machine_line, markdown_table, write_json
from benchmarks.cutout import add_model_arguments, models_and_cutouts, prepare_run, random_images, variant_models
from vision.nn.reference import BranchLoop
from xmcommon.cli import exit_process, run_cli

HEADER = ("model", "classes", "kept", "batch", "branch GMACs", "fused (ms)", "loop (ms)", "fused speed-up",
          "branch GMAC/s")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Fused branches vs the per-branch loop, on the same trunk features.")
    add_model_arguments(parser)
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    prepare_run(args)
    rows = []
    for variant, num_classes, model in variant_models(args):
        models = models_and_cutouts(model, args.percents)
        loops = {kept: BranchLoop(m) for kept, m, _ in models}
        for batch in args.batches:
            with torch.inference_mode():
                features = model.trunk(random_images(batch, model.config.image_size))
                fns = {kept: (lambda m=m: m.forward_branches(features, [None] * len(m.levels)))
                       for kept, m, _ in models}
                fns |= {f"{kept} loop": (lambda r=loop: r.run_levels(features, [None] * len(r.model.levels)))
                        for kept, loop in loops.items()}
                times = interleaved_timings(fns, args.runs)
            for kept, _, cost in models:
                branch_macs = cost.macs - cost.parts[0].macs
                fused, loop = times[kept].ms(args.clock), times[f"{kept} loop"].ms(args.clock)
                rows.append({"model": variant, "classes": num_classes, "kept": kept, "batch": batch,
                             "branch_gmacs": branch_macs / 1e9, "fused_ms": fused, "loop_ms": loop,
                             "speed_up": loop / fused, "gmac_per_s": branch_macs * batch / fused / 1e6})
            print(f"{variant}, {num_classes} classes, batch {batch}: done", file=sys.stderr, flush=True)
        del model, models, loops
    result = {"machine": machine(), "clock": args.clock, "runs": args.runs, "rows": rows}
    write_json(args.json, result)
    return result


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    cells = [[r["model"], r["classes"], r["kept"], r["batch"], f"{r['branch_gmacs']:.3f}", f"{r['fused_ms']:.2f}",
              f"{r['loop_ms']:.2f}", f"{r['speed_up']:.2f}x", f"{r['gmac_per_s']:.1f}"] for r in result["rows"]]
    return (f"{machine_line(result['machine'])}; {result['clock']} clock, median of {result['runs']} runs\n\n"
            + markdown_table(HEADER, cells, "lrlrrrrrr"))


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
