"""Cutout benchmark: params, GMACs and CPU latency of SeqPar models and their cutouts.

For ResNet50-based PHL (lateSP) and NHL models and a ConvNeXtV2-tiny NHL model with 10/100/1000 classes
(random weights), and the packaged default model (``default``: 1000 classes, trained, its own image size): the
full model and cutouts keeping 1/5/10 % of the classes, at batch 1 and 16, fused execution vs the per-branch reference
loop (``vision.nn.reference.BranchLoop``), and a plain timm ResNet50 measured in the same run as the
machine's reference. Each variant's own backbone (the whole timm network, e.g. ``convnextv2_tiny`` at 224 px or
``tf_efficientnet_lite0`` at the default model's 160 px) is measured in the same run too: "% of backbone GMAC/s"
tells how much of a gap to ResNet50 the backbone's architecture already has (depthwise convolutions and
elementwise-heavy blocks sustain fewer GMAC/s than ResNet50's dense convolutions in any execution). Latency: the
median of ``--runs`` runs after a warm-up; per model size and batch, the full model, its cutouts and their
reference loops are timed interleaved (``benchmarks.common``) together with ResNet50, against which their
"% of ResNet50 GMAC/s" is computed (ResNet50 at batch 1 streams 100 MB of weights per image, so its speed
follows the machine's memory traffic: measured apart, the ratio drifted by up to 40 %); the timm rows are timed
once per batch. MACs are counted at each model's own image size.

    python -m benchmarks.cutout                      # all sizes
    python -m benchmarks.cutout --classes 10 100 --runs 5
    python -m benchmarks.cutout --classes 10 --variants nhl_resnet50 --batches 1 --runs 1   # a quick check
    python -m benchmarks.cutout --variants default --clock cpu --threads 1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import timm
import torch

from benchmarks.common import (
    CLOCKS,
    add_json_argument,
    cell,
    interleaved_timings,
    machine,
    machine_line,
    markdown_table,
    timing,
    write_json,
)
from vision.cost import measure
from vision.io import load_seqpar
from vision.model import SeqParModel
from vision.nn.reference import BranchLoop
from vision.presets import available_presets, preset
from xmcommon.cli import exit_process, run_cli

HEADER = ("model", "classes", "kept", "batch", "params (M)", "GMACs", "latency (ms)", "GMAC/s", "% of ResNet50 GMAC/s",
          "% of backbone GMAC/s", "loop (ms)", "fused speed-up", "latency saving / GMAC saving")
ALIGN = "lrlrrrrrrrrrr"
REFERENCE = "resnet50"
VARIANTS = ("phl_latesp_resnet50", "nhl_resnet50", "nhl_convnextv2_tiny")
DEFAULT = "default"


def kept_classes(num_classes: int, percent: float) -> list[int]:
    """A contiguous block of classes (one semantic group under the default tree) of ``percent`` %."""
    return list(range(max(1, round(num_classes * percent / 100))))


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The models, cutouts, batches and timing settings of this benchmark (``benchmarks.branches`` shares them)."""
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--variants", nargs="+", default=[*VARIANTS, DEFAULT],
                        help=f"vision presets, of: {', '.join(available_presets())}; or {DEFAULT!r}, the packaged "
                             "model (1000 classes; --classes does not apply)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--percents", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="wall: latency; cpu: process CPU time (robust on a shared machine with --threads 1)")
    add_json_argument(parser)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Params, GMACs and CPU latency of SeqPar models and their cutouts.")
    add_model_arguments(parser)
    parser.add_argument("--no-loop", action="store_true", help="skip the per-branch reference loop")
    return parser


def prepare_run(args: argparse.Namespace) -> None:
    """Reject bad arguments before any timing, then set the threads and the seed of the presets' random weights."""
    for name in args.variants:
        if name != DEFAULT:
            preset(name, num_classes=10)  # an unknown preset is bad input
    if min(args.classes + args.batches) < 1 or args.runs < 1:
        raise ValueError("--classes, --batches and --runs must be >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)


def variant_models(args: argparse.Namespace) -> Iterator[tuple[str, int, SeqParModel]]:
    """(variant, classes, model) for every variant and class count asked for (the packaged model: 1000 classes)."""
    for variant in args.variants:
        for num_classes in [1000] if variant == DEFAULT else args.classes:
            yield variant, num_classes, (load_seqpar(DEFAULT) if variant == DEFAULT
                                         else SeqParModel(preset(variant, num_classes=num_classes)))


def models_and_cutouts(model: SeqParModel, percents: list[float]) -> list[tuple[str, SeqParModel, Any]]:
    """(kept label, model, cost) for the full model and each distinct cutout size."""
    model.eval()
    num_classes = model.config.num_classes
    models = [("full", model, measure(model))]
    for percent in percents:
        keep = kept_classes(num_classes, percent)
        if len(keep) < num_classes and all(len(keep) != len(m.config.class_ids) for _, m, _ in models):
            cut = model.cutout(keep, share_trunk=True)
            models.append((f"{len(keep)} ({percent:g} %)", cut, measure(cut)))
    return models


def main(args: argparse.Namespace) -> dict[str, Any]:
    prepare_run(args)
    reference, reference_cost = _timm_model(REFERENCE, 224)
    rows = _timm_rows(REFERENCE, 224, (reference, reference_cost), args.batches, args.runs, args.clock)
    backbone_rates = {(REFERENCE, 224): {row["batch"]: row["gmac_per_s"] for row in rows}}
    for variant, num_classes, model in variant_models(args):
        backbone = (model.config.backbone, model.config.image_size)
        if backbone not in backbone_rates:
            backbone_rows = _timm_rows(*backbone, _timm_model(*backbone), args.batches, args.runs, args.clock)
            backbone_rates[backbone] = {row["batch"]: row["gmac_per_s"] for row in backbone_rows}
            rows += backbone_rows
        models = models_and_cutouts(model, args.percents)
        full_cost = models[0][2]
        loops = {} if args.no_loop else {kept: BranchLoop(m) for kept, m, _ in models}
        for batch in args.batches:
            x, reference_x = random_images(batch, model.config.image_size), random_images(batch, 224)
            fns = {REFERENCE: lambda x=reference_x: reference(x)}  # taking turns with the models: same machine state
            fns |= {kept: (lambda m=m, x=x: m(x)) for kept, m, _ in models}
            fns |= {f"{kept} loop": (lambda loop=loop, x=x: loop(x)) for kept, loop in loops.items()}
            with torch.inference_mode():
                times = interleaved_timings(fns, args.runs)
            reference_rate = reference_cost.macs * batch / times[REFERENCE].ms(args.clock) / 1e6
            full_latency = times["full"].ms(args.clock)
            for kept, _, cost in models:
                t = times[kept].ms(args.clock)
                mac_saving = 1 - cost.macs / full_cost.macs
                rows.append({"model": variant, "classes": num_classes, "kept": kept, "batch": batch,
                             "backbone_gmac_per_s": backbone_rates[backbone][batch],
                             "reference_gmac_per_s": reference_rate,
                             "params": cost.params, "gmacs": cost.gmacs, "latency_ms": t,
                             "loop_ms": None if args.no_loop else times[f"{kept} loop"].ms(args.clock),
                             "gmac_per_s": cost.macs * batch / t / 1e6, "mac_saving": mac_saving,
                             "latency_saving": 1 - t / full_latency})
            print(f"{variant}, {num_classes} classes, batch {batch}: done", file=sys.stderr, flush=True)
        del model, models, loops
    first_reference_rate = backbone_rates[(REFERENCE, 224)]
    for row in rows:
        reference_rate = row.pop("reference_gmac_per_s", first_reference_rate[row["batch"]])
        row["percent_of_resnet50_rate"] = 100 * row["gmac_per_s"] / reference_rate
        row["percent_of_backbone_rate"] = 100 * row["gmac_per_s"] / row.pop("backbone_gmac_per_s", row["gmac_per_s"])
    result = {"machine": machine(), "clock": args.clock, "runs": args.runs, "rows": rows, "table": _table(rows)}
    write_json(args.json, result)
    return result


def random_images(batch: int, size: int) -> torch.Tensor:
    """The same random images for every model of one input size."""
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch * 1000 + size))


def _timm_model(name: str, size: int) -> tuple[torch.nn.Module, Any]:
    """A plain timm network (random weights) in eval mode, and its cost at ``size`` px."""
    net = timm.create_model(name).eval()
    return net, measure(net, (1, 3, size, size))


def _timm_rows(name: str, size: int, net_and_cost: tuple[torch.nn.Module, Any], batches: list[int], runs: int,
               clock: str) -> list[dict[str, Any]]:
    """Rows of a plain timm network (from :func:`_timm_model`) at ``size`` px and each batch size: ResNet50, the
    machine's reference, and each variant's own backbone."""
    net, cost = net_and_cost
    label = f"{name} (timm)" if size == 224 else f"{name} (timm, {size} px)"
    rows = []
    for batch in batches:
        x = random_images(batch, size)
        with torch.inference_mode():
            t = timing(lambda x=x: net(x), runs).ms(clock)
        rows.append({"model": label, "classes": 1000, "kept": None, "batch": batch, "params": cost.params,
                     "gmacs": cost.gmacs, "latency_ms": t, "loop_ms": None, "gmac_per_s": cost.macs * batch / t / 1e6,
                     "mac_saving": None, "latency_saving": None})
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    def cells(r: dict[str, Any]) -> list[Any]:
        loop = r["loop_ms"]
        speed_up = None if loop is None else loop / r["latency_ms"]
        ratio = r["latency_saving"] / r["mac_saving"] if r["mac_saving"] else None
        return [r["model"], r["classes"], r["kept"], r["batch"], f"{r['params'] / 1e6:.2f}", f"{r['gmacs']:.3f}",
                f"{r['latency_ms']:.1f}", f"{r['gmac_per_s']:.1f}", f"{r['percent_of_resnet50_rate']:.0f} %",
                f"{r['percent_of_backbone_rate']:.0f} %", cell(loop, ".1f"), cell(speed_up, ".2f", "x"),
                cell(ratio, ".2f")]

    return markdown_table(HEADER, map(cells, rows), ALIGN)


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    return (f"{machine_line(result['machine'])}; {result['clock']} clock, median of {result['runs']} runs\n\n"
            f"{result['table']}")


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
