"""``python -m vision.export --model default --classes 281-285 --out cat.onnx``: a model or a cutout as ONNX.

Without ``--classes`` the full model is exported. ``--variant fp16`` / ``int8`` write the smaller variants
(int8 calibrates on the build photos of ``--calibration-images``: never the held-out ones). The file is
self-describing: see :mod:`vision.onnx`. Exit codes: 0 ok, 2 bad input, 1 internal error.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from xmcommon.cli import exit_process, run_cli
from xmcommon.ids import parse_ids

from .quantize import VARIANTS


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a SeqPar model, or a cutout of it, to a self-describing "
                                                 "ONNX file (dynamic batch, optional gains input).")
    parser.add_argument("--model", default="default", help="saved model directory (default: the packaged model)")
    parser.add_argument("--classes", default=None, help="cutout classes, ids and ranges like '281-285,300' "
                                                        "(default: the full model)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--no-gains", action="store_true", help="no gains input (plain logits only; less compute)")
    parser.add_argument("--variant", choices=VARIANTS, default="fp32")
    parser.add_argument("--calibration-images", default=None,
                        help="int8: labelled photo folder; its build photos (vision.data.photos.split_photos) calibrate")
    parser.add_argument("--calibration-count", type=int, default=64, help="int8: how many build photos calibrate")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.variant == "int8" and args.calibration_images is None:
        raise ValueError("--variant int8 needs --calibration-images (a labelled photo folder)")
    if args.calibration_count < 1:
        raise ValueError(f"--calibration-count {args.calibration_count}: expected a positive number of photos")
    from .io import load_seqpar
    from .onnx import export_classes, read_metadata

    model = load_seqpar(args.model).eval()
    classes = None if args.classes is None else parse_ids(args.classes, what="--classes")
    out = Path(args.out)
    start = time.perf_counter()
    if args.variant == "fp32":
        export_classes(model, classes, out, gains=not args.no_gains, provenance={"source": str(args.model)})
    else:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_classes(model, classes, Path(tmp, "fp32.onnx"), gains=not args.no_gains,
                                  provenance={"source": str(args.model)})
            write_variant(fp32, out, args.variant, model, args.calibration_images, args.calibration_count)
    seconds = time.perf_counter() - start
    metadata = read_metadata(out)
    return {"out": str(out), "bytes": out.stat().st_size, "variant": args.variant, "seconds": seconds,
            "classes": len(metadata["class_ids"]), "inputs": metadata["inputs"], "outputs": metadata["outputs"]}


def write_variant(fp32: Path, out: Path, variant: str, model: Any, images: str | None, count: int) -> Path:
    """The fp16 or int8 variant of an exported fp32 file (int8: calibrated on ``count`` build photos of ``images``)."""
    from .quantize import to_fp16, to_int8

    if variant == "fp16":
        return to_fp16(fp32, out)
    return to_int8(fp32, out, calibration_batches(model, images, count))


def calibration_batches(model: Any, folder: str, count: int) -> list[np.ndarray]:
    """Up to ``count`` build photos of ``folder`` (evenly spaced, never held-out ones), preprocessed, one per batch."""
    from .data import eval_transform, load_rgb
    from .data.images import list_labelled_images
    from .data.photos import split_photos

    build, _ = split_photos(list_labelled_images(folder))
    if not build:
        raise ValueError(f"{folder}: no build photos (every photo is held out)")
    step = max(1, len(build) // count)
    transform = eval_transform(model.data_config())
    return [transform(load_rgb(p.path)).unsqueeze(0).numpy() for p in build[::step][:count]]


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    exit_process(cli())
