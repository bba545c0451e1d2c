"""``python -m crossmodal.export --text "meow" --out cat.onnx``: the cutout a cue selects, as a self-describing ONNX file.

The cue (``--text`` or ``--audio``) becomes a guide; the guide's classes are cut out of the model and exported
(:mod:`vision.onnx`) with the guide and the gains the classifier would apply (calibrated level gains included)
in the file's provenance. Exit codes: 0 ok, 2 bad input (e.g. a cue that is not confident), 1 internal error.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from vision.export import write_variant
from vision.quantize import VARIANTS
from xmcommon.cli import exit_process, run_cli


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export the cutout a text or sound cue selects to ONNX.")
    cue = parser.add_mutually_exclusive_group(required=True)
    cue.add_argument("--text", help="text cue, e.g. 'meow'")
    cue.add_argument("--audio", help="sound file whose tags give the cue")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--model", default="default", help="SeqPar model directory (default: the packaged model)")
    parser.add_argument("--no-gains", action="store_true", help="no gains input (plain logits only)")
    parser.add_argument("--variant", choices=VARIANTS, default="fp32")
    parser.add_argument("--calibration-images", default=None, help="int8: labelled photo folder (its build photos)")
    parser.add_argument("--calibration-count", type=int, default=64)
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.text is not None and not args.text.strip():
        raise ValueError("--text is empty: expected a cue such as 'meow'")
    if args.audio is not None and not Path(args.audio).is_file():
        raise FileNotFoundError(f"--audio {args.audio}: file not found")
    if args.variant == "int8" and args.calibration_images is None:
        raise ValueError("--variant int8 needs --calibration-images (a labelled photo folder)")
    from vision.onnx import export_classes

    from .classifier import GuidedClassifier

    clf = GuidedClassifier.from_pretrained(args.model)
    guide = clf.guide(text=args.text) if args.text is not None else clf.guide(audio=args.audio)
    ran, reason, classes = clf.resolve(guide, "cutout")
    if ran != "cutout":
        raise ValueError(f"cue {args.text or args.audio!r} gives no cutout: {reason}")
    cutout = clf.cutouts.get(classes)[0].model
    gains = clf.gains_for(cutout, guide)
    provenance = {"source": str(args.model), "guide": {
        "cue": args.text if args.text is not None else Path(args.audio).name, "source": guide.source,
        "classes": list(classes), "gains": [[k, v] for k, v in gains.items()], "explanation": guide.explain()}}
    out, start = Path(args.out), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = out if args.variant == "fp32" else Path(tmp, "fp32.onnx")
        export_classes(clf.model, classes, fp32, gains=not args.no_gains, provenance=provenance)
        if args.variant != "fp32":
            write_variant(fp32, out, args.variant, clf.model, args.calibration_images, args.calibration_count)
    return {"out": str(out), "bytes": out.stat().st_size, "variant": args.variant,
            "export_seconds": time.perf_counter() - start, "classes": list(classes),
            "gains": provenance["guide"]["gains"]}


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    exit_process(cli())
