"""``python -m crossmodal.calibrate``: the attention gain per tree level that maximises guided top-1.

The paper tuned one gain scalar per dataset by hand. Here a coordinate search over a grid, level by
level (starting from the guides' own gains), picks the gain of the cued nodes at each level on a
validation folder, and writes it into the model's config metadata (``metadata["calibration"]``),
where :class:`GuidedClassifier` reads it. Trunk features are computed once per image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .classifier import CALIBRATION_KEY, GuidedClassifier
from xmcommon.cli import run_main
from .dataset import list_labelled_images
from .evaluate import CUE_KINDS, EvalItem, build_items, guide_for_cue
from .guide import Guide

DEFAULT_GRID = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def calibrate(clf: GuidedClassifier, items: Sequence[EvalItem], *, mode: str = "cutout+attend",
              grid: Sequence[float] = DEFAULT_GRID, progress: bool = True) -> dict[str, Any]:
    """Best gain per level (``None``: keep the guides' gains) and the top-1 before and after."""
    if mode not in ("attend", "cutout+attend"):
        raise ValueError(f"calibration needs an attention mode ('attend' or 'cutout+attend'), got {mode!r}")
    if not grid or any(not 0 <= g < float("inf") for g in grid):
        raise ValueError(f"grid must be non-empty finite gains >= 0, got {list(grid)}")
    cached: list[tuple[torch.Tensor, Guide | None, int]] = []
    guides: dict[str, Guide] = {}
    for item in tqdm(items, desc="calibrate: trunk features", unit="img", disable=not progress):
        if item.cue is not None and item.cue not in guides:
            guides[item.cue] = guide_for_cue(clf, item.cue)
        features = clf.trunk_features(clf.preprocessor([item.image.path]))
        cached.append((features, guides.get(item.cue) if item.cue else None, item.image.class_id))
    if not any(g is not None and g.confident for _, g, _ in cached):
        raise ValueError("no image has a confident guide: nothing to calibrate")

    def top1(levels: list[float | None]) -> float:
        hits = sum(clf.predict_features(f, g, mode, top_k=1, level_gains=levels)[0].top1.class_id == label
                   for f, g, label in cached)
        return hits / len(cached)

    best: list[float | None] = [None] * len(clf.model.levels)
    baseline = best_score = top1(best)
    trials = [{"level_gains": list(best), "top1": baseline}]
    for depth in range(len(best)):
        for gain in grid:
            candidate = best[:depth] + [float(gain)] + best[depth + 1:]
            score = top1(candidate)
            trials.append({"level_gains": candidate, "top1": score})
            if score > best_score:
                best, best_score = candidate, score
    return {"level_gains": best, "mode": mode, "grid": [float(g) for g in grid], "images": len(cached),
            "baseline_top1": baseline, "calibrated_top1": best_score, "trials": trials}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Calibrate the attention gain per level on a validation folder.")
    parser.add_argument("--images", required=True, help="validation images (ImageFolder or {wnid}_{name} files)")
    cues = parser.add_mutually_exclusive_group(required=True)
    cues.add_argument("--cues", help="CSV with rows 'image,cue_audio_or_text'")
    cues.add_argument("--cue-from-label", choices=CUE_KINDS)
    parser.add_argument("--model", required=True, help="SeqPar model directory to calibrate")
    parser.add_argument("--out", help="where to save the calibrated model (default: overwrite --model)")
    parser.add_argument("--mode", default="cutout+attend", choices=("attend", "cutout+attend"))
    parser.add_argument("--grid", default=",".join(f"{g:g}" for g in DEFAULT_GRID))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    try:
        grid = [float(g) for g in args.grid.split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--grid {args.grid!r}: expected numbers like '1,2,4'") from None
    clf = GuidedClassifier.from_pretrained(args.model)
    clf.level_gains = None  # search from the guides' own gains, not from an earlier calibration
    images = list_labelled_images(args.images)[: args.limit]
    items = build_items(images, cue_csv=args.cues, cue_from_label=args.cue_from_label, classes=clf.model.class_ids)
    found = calibrate(clf, items, mode=args.mode, grid=grid, progress=not args.no_progress)
    model = clf.model
    record = {k: v for k, v in found.items() if k != "trials"} | {"validation": str(args.images),
                                                                  "cues": args.cues or f"label {args.cue_from_label}"}
    model.config = model.config.replace(metadata={**model.config.metadata, CALIBRATION_KEY: record})
    out = Path(args.out or args.model)
    model.save_pretrained(out)
    return {**found, "saved": str(out)}


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    code, result = run_main(main, args)
    if code == 0:
        print(json.dumps({k: v for k, v in result.items() if k != "trials"}, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(cli())
