"""``python -m crossmodal.calibrate --images VAL --cue-from-label superclass --model DIR --out DIR2``: calibrate a model.

Fits, on a validation folder, the attention gain per tree level, the cue agreement (with misleading cues
made from other classes' labels, when cues come from labels) and one softmax temperature per mode, and
saves the model with them (``config.calibration``) to ``--out`` (default: back to ``--model``). The library
is :mod:`crossmodal.calibration`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vision.data import list_labelled_images
from vision.io import DEFAULT_MODEL_NAME, copy_weights, resolve_model_dir, save_config
from xmcommon.cli import exit_process, render_json, run_cli

from .calibration import DEFAULT_GRID, DEFAULT_WRONG_CUE_PRIOR, calibrate, calibrated_config
from .classifier import GuidedClassifier
from .evaluation import CUE_KINDS, build_items


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Calibrate the attention gain per level on a validation folder.")
    parser.add_argument("--images", required=True, help="validation images (ImageFolder or {wnid}_{name} files)")
    cues = parser.add_mutually_exclusive_group(required=True)
    cues.add_argument("--cues", help="CSV with rows 'image,cue_audio_or_text'")
    cues.add_argument("--cue-from-label", choices=CUE_KINDS)
    parser.add_argument("--model", required=True, help="SeqPar model directory to calibrate")
    parser.add_argument("--out", help="where to save the calibrated model (default: overwrite --model)")
    parser.add_argument("--mode", default="attend", choices=("attend", "cutout+attend"),
                        help="the mode whose top-1 the level gains maximise")
    parser.add_argument("--grid", default=",".join(f"{g:g}" for g in DEFAULT_GRID))
    parser.add_argument("--wrong-cue-prior", type=float, default=DEFAULT_WRONG_CUE_PRIOR,
                        help="the share of misleading cues expected in use; the cue agreement is fitted for it")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    try:
        grid = [float(g) for g in args.grid.split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--grid {args.grid!r}: expected numbers like '1,2,4'") from None
    if args.out is None and str(args.model) == DEFAULT_MODEL_NAME:
        raise ValueError("--model default is the packaged model: give --out DIR for the calibrated copy")
    images = list_labelled_images(args.images)[: args.limit]
    clf = GuidedClassifier.from_pretrained(args.model)
    clf.level_gains = None  # search from the guides' own gains, not from an earlier calibration
    items = build_items(images, cue_csv=args.cues, cue_from_label=args.cue_from_label, classes=clf.model.class_ids)
    wrong = build_items(images, cue_from_label=args.cue_from_label, wrong_cue_rate=1.0, seed=1,
                        classes=clf.model.class_ids) if args.cue_from_label else []
    found = calibrate(clf, items, wrong_items=wrong, gain_mode=args.mode, grid=grid,
                      wrong_cue_prior=args.wrong_cue_prior, progress=not args.no_progress)
    record = {k: v for k, v in found.items() if k != "trials"} | {"validation": str(args.images),
                                                                  "cues": args.cues or f"label {args.cue_from_label}"}
    config = calibrated_config(clf.model.config, found, record)
    out = Path(args.out or args.model)
    if out.resolve() != resolve_model_dir(args.model).resolve():
        copy_weights(args.model, out)  # the weights do not change: their bytes (and dtype) stay as they were
    save_config(config, out)
    return {**found, "saved": str(out)}


def _render(result: dict[str, Any], args: argparse.Namespace) -> str:
    return render_json({k: v for k, v in result.items() if k != "trials"})


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, _render)


if __name__ == "__main__":
    exit_process(cli())
