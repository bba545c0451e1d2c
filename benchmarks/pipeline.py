"""Guided pipeline benchmark: per-frame latency with a cached cutout vs the full model, cue -> guide, cutout builds.

Measured side by side in one run through ``GuidedClassifier`` (preprocessed inputs, so image
decoding is not part of it): median of ``--runs`` runs after a warm-up, per frame, at each batch
size, the modes timed interleaved (``benchmarks.common``). Targets (issue 6): cutout latency <= full
latency x (cutout GMAC ratio + 0.1); a new text cue -> ready cutout in <= 50 ms.

    python -m benchmarks.pipeline --model DIR                 # a saved model (e.g. the default model)
    python -m benchmarks.pipeline --preset nhl_resnet50 --num-classes 1000
    python -m benchmarks.pipeline --model default --batches 1 --runs 1       # a quick check
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import torch

from benchmarks.common import (
    add_json_argument,
    cell,
    interleaved_timings,
    machine,
    machine_line,
    markdown_table,
    write_json,
)
from crossmodal import MODES, GuidedClassifier
from vision import SeqParModel, load_seqpar
from vision.presets import preset
from xmcommon.cli import exit_process, run_cli

TEXT_CUES = ("meow", "a dog barking", "find the cat", "church bells", "a goldfish in a bowl", "the sound of a siren",
             "espresso machine", "crow", "sea waves", "car horn")
CUTOUT_TARGET = 50.0  # ms from a new text cue to a ready cutout
RATIO_SLACK = 0.1  # a cutout's latency may be its GMAC ratio + this of the full model's


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Guided pipeline latency: cached cutouts vs the full model, "
                                                 "cue -> guide, cutout builds.")
    parser.add_argument("--model", help="saved SeqPar model directory (or 'default')")
    parser.add_argument("--preset", default="nhl_resnet50", help="vision preset when no --model (random weights)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--cue", default="meow", help="text cue whose cutout is timed")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    add_json_argument(parser)
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.runs < 1 or min(args.batches) < 1:
        raise ValueError("--runs and --batches must be >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_seqpar(args.model) if args.model else SeqParModel(preset(args.preset, num_classes=args.num_classes))
    clf = GuidedClassifier(model)
    name = args.model or f"{args.preset} ({args.num_classes} classes, random weights)"

    start = time.perf_counter()
    clf.cues.mapper  # noqa: B018 - load once, outside the timings
    mapper_load_s = time.perf_counter() - start
    cue_rows = []
    for text in TEXT_CUES:  # each text is new to the mapper: no query-embedding memo hit, so each is timed once
        start = time.perf_counter()
        guide = clf.guide(text=text)
        cue_rows.append({"text": text, "ms": 1e3 * (time.perf_counter() - start), "classes": len(guide.classes)})
    guide = clf.guide(text=args.cue)
    _, fallback, classes = clf.resolve(guide, "cutout")
    if fallback:
        raise ValueError(f"--cue {args.cue!r} gives no cutout on this model: {fallback}")

    fresh = itertools.count(1)  # "meow !", "meow !!", ...: a new text for every call, never the memoised cue
    cold = interleaved_timings({
        "build": lambda: clf.cutouts.get(classes),
        "ready": lambda: clf.cutouts.get(clf.resolve(clf.guide(text=f"{args.cue} {'!' * next(fresh)}"), "cutout")[2]),
    }, args.runs, setup=clf.cutouts.clear)
    cut_cost = clf.cutouts.get(classes)[0].cost
    gmac_ratio = cut_cost.macs / clf.full_cost.macs

    rows = []
    size = clf.preprocessor.image_size
    for batch in args.batches:
        x = torch.randn(batch, 3, size, size)
        fns = {mode: (lambda m=mode, x=x: clf.predict_preprocessed(x, guide if m != "unguided" else None, m))
               for mode in MODES}
        ms = {mode: t.wall_ms / batch for mode, t in interleaved_timings(fns, args.runs).items()}
        for mode in MODES:
            cut = mode.startswith("cutout")
            ratio = ms[mode] / ms["unguided"]
            rows.append({"batch": batch, "mode": mode, "ms_per_frame": ms[mode], "ratio_to_full": ratio,
                         "target_ratio": gmac_ratio + RATIO_SLACK if cut else None,
                         "met": ratio <= gmac_ratio + RATIO_SLACK if cut else None})
    result = {
        "model": name, "machine": machine(), "runs": args.runs, "mapper_load_s": mapper_load_s, "cues": cue_rows,
        "cue": args.cue, "cutout_classes": len(classes), "cutout_build_ms": cold["build"].wall_ms,
        "new_cue_to_ready_cutout_ms": cold["ready"].wall_ms, "ready_target_ms": CUTOUT_TARGET,
        "gmacs": {"full": clf.full_cost.macs / 1e9, "cutout": cut_cost.macs / 1e9}, "gmac_ratio": gmac_ratio,
        "params": {"full": clf.full_cost.params, "cutout": cut_cost.params}, "rows": rows,
        "tables": [_cue_table(cue_rows), _latency_table(rows)],
    }
    write_json(args.json, result)
    return result


def _cue_table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(("text cue", "cue -> guide (ms)", "classes"),
                          ([r["text"], f"{r['ms']:.1f}", r["classes"]] for r in rows), "lrr")


def _latency_table(rows: list[dict[str, Any]]) -> str:
    def cells(r: dict[str, Any]) -> list[Any]:
        cached = r["mode"].startswith("cutout")
        met = None if r["met"] is None else ("yes" if r["met"] else "no")
        return [r["batch"], r["mode"] + (" (cached)" if cached else ""), f"{r['ms_per_frame']:.1f}",
                f"{r['ratio_to_full']:.2f}", cell(r["target_ratio"], ".2f"), met]

    header = ("batch", "mode", "ms per frame", "ratio to full", f"target ratio (GMAC ratio + {RATIO_SLACK:g})", "met")
    return markdown_table(header, map(cells, rows), "rlrrrl")


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    cues, latency = result["tables"]
    g, p = result["gmacs"], result["params"]
    cutout = (f"cue {result['cue']!r}: {result['cutout_classes']} classes; cutout build (cutout + cost accounting) "
              f"median {result['cutout_build_ms']:.1f} ms; new text cue -> ready cutout median "
              f"{result['new_cue_to_ready_cutout_ms']:.1f} ms (target <= {result['ready_target_ms']:g} ms)")
    cost = (f"GMACs per frame: full {g['full']:.3f}, cutout {g['cutout']:.3f} (ratio {result['gmac_ratio']:.3f}); "
            f"params: full {p['full'] / 1e6:.2f} M, cutout {p['cutout'] / 1e6:.2f} M")
    return "\n".join([f"model: {result['model']}; {machine_line(result['machine'])}; CPU shared with other jobs",
                      f"mapper load: {result['mapper_load_s']:.1f} s", "", cues, "", cutout, cost, "", latency])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
