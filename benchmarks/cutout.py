"""Cutout benchmark: params, GMACs and CPU latency of SeqPar models and their cutouts.

For ResNet50-based PHL (lateSP) and NHL models with 10/100/1000 classes: the full model and
cutouts keeping 1/5/10 % of the classes, at batch 1 and 16, fused execution vs the per-branch
reference loop, and a plain timm ResNet50 measured in the same run as the machine's reference.

    python benchmarks/cutout.py                      # all sizes
    python benchmarks/cutout.py --classes 10 100 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch

from vision.cost import measure
from vision.model import SeqParModel
from vision.presets import preset
from vision.nn.reference import BranchLoop


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def median_latency(fn, x: torch.Tensor, runs: int) -> float:
    """Median time of ``fn(x)`` over ``runs`` runs, after one warm-up run (seconds, by ``clock``)."""
    with torch.inference_mode():
        fn(x)
        times = []
        for _ in range(runs):
            start = clock()
            fn(x)
            times.append(clock() - start)
    return statistics.median(times)


def kept_classes(num_classes: int, percent: float) -> list[int]:
    """A contiguous block of classes (one semantic group under the default tree) of ``percent`` %."""
    return list(range(max(1, round(num_classes * percent / 100))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--variants", nargs="+", default=["phl_latesp_resnet50", "nhl_resnet50"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--percents", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-loop", action="store_true", help="skip the per-branch reference loop")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: latency; cpu: process CPU time (robust on a shared machine with --threads 1)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, median of {args.runs} runs")

    resnet = timm.create_model("resnet50").eval()
    ref_macs = measure(resnet).macs
    reference = {}
    header = ("| model | classes | kept | batch | params (M) | GMACs | latency (ms) | GMAC/s | % of ResNet50 GMAC/s "
              "| loop (ms) | fused speed-up | latency saving / GMAC saving |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for batch in args.batches:
        x = torch.randn(batch, 3, 224, 224)
        t = median_latency(resnet, x, args.runs)
        reference[batch] = ref_macs * batch / t / 1e9
        print(f"| resnet50 (timm) | 1000 | | {batch} | {measure(resnet).params / 1e6:.2f} | {ref_macs / 1e9:.3f} "
              f"| {t * 1e3:.1f} | {reference[batch]:.1f} | 100 % | | | |")
    del resnet

    for variant in args.variants:
        for num_classes in args.classes:
            model = SeqParModel(preset(variant, num_classes=num_classes)).eval()
            full_cost = measure(model)
            models = [("full", model, full_cost)]
            for percent in args.percents:
                keep = kept_classes(num_classes, percent)
                if len(keep) < num_classes and all(len(keep) != len(m.config.class_ids) for _, m, _ in models):
                    cut = model.cutout(keep, share_trunk=True)
                    models.append((f"{len(keep)} ({percent:g} %)", cut, measure(cut)))
            for batch in args.batches:
                x = torch.randn(batch, 3, 224, 224)
                full_latency = None
                for kept, m, cost in models:
                    t = median_latency(m, x, args.runs)
                    full_latency = full_latency or t
                    loop = "" if args.no_loop else median_latency(BranchLoop(m), x, args.runs)
                    rate = cost.macs * batch / t / 1e9
                    mac_saving = 1 - cost.macs / full_cost.macs
                    ratio = f"{(1 - t / full_latency) / mac_saving:.2f}" if mac_saving > 0 else ""
                    print(f"| {variant} | {num_classes} | {kept} | {batch} | {cost.params / 1e6:.2f} | {cost.gmacs:.3f} "
                          f"| {t * 1e3:.1f} | {rate:.1f} | {100 * rate / reference[batch]:.0f} % "
                          f"| {'' if loop == '' else f'{loop * 1e3:.1f}'} "
                          f"| {'' if loop == '' else f'{loop / t:.2f}x'} | {ratio} |", flush=True)
            del model, models


if __name__ == "__main__":
    main()
