"""``python -m crossmodal.evaluate --images DIR --cue-from-label superclass``: guided vs unguided evaluation.

Cues come from a CSV (``image,cue_audio_or_text``) or are synthesised from each image's true label,
optionally replaced by a misleading cue (``--wrong-cue-rate``). Writes report.md, summary.json,
per_image.csv, per_class.csv and plots to ``--out``; prints the report. The per-image records go to
``--out``/per_image*.jsonl as they are computed, and ``--resume`` continues an interrupted run. Under torchrun
the images are shared out over the processes and rank 0 writes the (single-process) report:

    torchrun --nproc_per_node 2 -m crossmodal.evaluate --images DIR --cue-from-label class --out eval_out

The library is :mod:`crossmodal.evaluation`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vision.data import list_labelled_images
from vision.data.photos import split_photos
from vision.distributed import is_main_process, teardown_distributed
from xmcommon.cli import exit_process, run_cli

from .classifier import GuidedClassifier
from .evaluation import CUE_KINDS, build_items, evaluate
from .report import write_outputs
from .result import MODES

PHOTO_SPLITS = ("all", "build", "held-out")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Guided vs unguided evaluation on a labelled image folder.")
    parser.add_argument("--images", required=True, help="ImageFolder, or a folder of {wnid}_{name}.JPEG files")
    cues = parser.add_mutually_exclusive_group()
    cues.add_argument("--cues", help="CSV with rows 'image,cue_audio_or_text'")
    cues.add_argument("--cue-from-label", choices=CUE_KINDS, help="synthesise a text cue from each true label")
    parser.add_argument("--wrong-cue-rate", type=float, default=0.0, help="probability of a misleading cue")
    parser.add_argument("--model", default="default", help="SeqPar model directory")
    parser.add_argument("--audio-model", default=None, help="audio tagger for audio cues in the CSV")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--gain-sweep", default="", help="gains to sweep on all levels, e.g. '1,1.5,2,3,4'")
    parser.add_argument("--min-agreement", type=float, default=None,
                        help="fall back to unguided for images whose cue agreement is lower (e.g. 0.5)")
    parser.add_argument("--photos", choices=PHOTO_SPLITS, default="all",
                        help="all images, or only the build or held-out ones of vision.data.photos.split_photos")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="eval_out", help="output folder")
    parser.add_argument("--resume", action="store_true", help="skip the images already in --out's per_image*.jsonl")
    parser.add_argument("--stop-after", type=int, metavar="N", help="stop each process after N images (to test --resume)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    try:
        sweep = [float(g) for g in args.gain_sweep.split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--gain-sweep {args.gain_sweep!r}: expected numbers like '1,2,4'") from None
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    images = list_labelled_images(args.images)
    if args.photos != "all":
        images = split_photos(images)[PHOTO_SPLITS.index(args.photos) - 1]
    images = images[: args.limit]
    clf = GuidedClassifier.from_pretrained(args.model, audio_model=args.audio_model)
    items = build_items(images, cue_csv=args.cues, cue_from_label=args.cue_from_label,
                        wrong_cue_rate=args.wrong_cue_rate, seed=args.seed, classes=clf.model.class_ids)
    report = evaluate(clf, items, modes=modes, gain_sweep=sweep, min_agreement=args.min_agreement,
                      progress=not args.no_progress, journal=args.out, resume=args.resume, stop_after=args.stop_after)
    if report is None:
        return {"stopped": True, "out": args.out}
    cue_desc = args.cues or (f"label {args.cue_from_label}" if args.cue_from_label else "none")
    policy = "" if args.min_agreement is None else f", fallback below cue agreement {args.min_agreement:g}"
    photos = "" if args.photos == "all" else f" {args.photos} photos"
    title = (f"Guided evaluation: {args.images}{photos} ({len(items)} images), model {args.model}, cues: {cue_desc}, "
             f"wrong-cue rate {args.wrong_cue_rate:g}{policy}")
    outputs = write_outputs(report, args.out, title) if is_main_process() else {}
    return {"title": title, "outputs": outputs, **report.to_dict()}


def _render(result: dict[str, Any], args: argparse.Namespace) -> str | None:
    if not is_main_process():
        return None
    if result.get("stopped"):
        return f"stopped after --stop-after {args.stop_after} images per process; continue with --resume"
    report = Path(result["outputs"]["markdown"]).read_text()
    return report + "\n" + "\n".join(f"{k}: {v}" for k, v in result["outputs"].items())


def cli(argv: list[str] | None = None) -> int:
    try:
        return run_cli(get_args_parser(), main, argv, _render)
    finally:
        teardown_distributed()


if __name__ == "__main__":
    exit_process(cli())
