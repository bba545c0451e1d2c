"""Deployment benchmark: the default model and the cat cutout (281-285) in torch vs onnxruntime fp32 / fp16 / int8.

Per model: file size, per-frame latency at each batch (torch and each onnxruntime variant timed interleaved,
median of ``--runs``; files without a gains input, i.e. the plain logits), export time (median of
``--export-runs`` exports of the file the classifier makes per cue, with a gains input) and, with ``--images``,
top-1 on the held-out photos (``vision.data.photos.split_photos``) and agreement with torch's top-1; int8 is
calibrated on ``--calibration-count`` build photos (never the held-out ones); "int8" keeps only the trunk's stem
in float, "int8 branches" the whole trunk.

    python -m benchmarks.deploy --images ../shared/data/imagenet-samples
    python -m benchmarks.deploy --runs 3 --export-runs 3 --batches 1      # without photos: latency, size, export
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    CAT_CLASSES,
    add_json_argument,
    cell,
    interleaved_timings,
    machine,
    machine_line,
    markdown_table,
    write_json,
)
from vision import load_seqpar
from vision.export import calibration_batches
from vision.onnx import OnnxSeqPar, export_classes
from vision.quantize import to_fp16, to_int8
from xmcommon.cli import exit_process, run_cli

HEADER = ["model", "runtime", "file MB", "batch 1 ms/frame", "batch 8 ms/frame", "top-1 %", "same top-1 as torch",
          "export s"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="labelled photo folder (int8 calibration and held-out top-1)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--export-runs", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--calibration-count", type=int, default=64)
    add_json_argument(parser)
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    if min(args.batches + [args.runs, args.export_runs, args.threads]) < 1:
        raise ValueError("--batches, --runs, --export-runs and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    model = load_seqpar("default").eval()
    held_out = _held_out(model, args.images) if args.images else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, classes in (("full (1000 classes)", None), ("cat cutout (281-285)", list(CAT_CLASSES))):
            net = model if classes is None else model.cutout(classes, share_trunk=True)
            files = {"onnxruntime fp32": export_classes(model, classes, Path(tmp, "fp32.onnx"), gains=False)}
            files["onnxruntime fp16"] = to_fp16(files["onnxruntime fp32"], Path(tmp, "fp16.onnx"))
            if args.images:
                calibration = calibration_batches(model, args.images, args.calibration_count)
                files["onnxruntime int8"] = to_int8(files["onnxruntime fp32"], Path(tmp, "int8.onnx"), calibration)
                files["onnxruntime int8 branches"] = to_int8(files["onnxruntime fp32"], Path(tmp, "int8b.onnx"),
                                                             calibration, float_trunk=True)
            sessions = {k: OnnxSeqPar(p, threads=args.threads) for k, p in files.items()}
            latency = _latency(net, sessions, args.batches, args.runs)
            export_s = _export_seconds(model, classes, Path(tmp, "gains.onnx"), args.export_runs)
            accuracy = _accuracy(net, sessions, held_out) if held_out else {}
            for runtime in ["torch", *sessions]:
                rows.append({"model": name, "runtime": runtime, "bytes": files[runtime].stat().st_size
                             if runtime in files else None, "ms_per_frame": latency[runtime],
                             **accuracy.get(runtime, {}), "export_s": export_s if runtime == "onnxruntime fp32"
                             else None})
            print(f"{name}: done", file=sys.stderr, flush=True)
    result = {"machine": machine(), "runs": args.runs, "export_runs": args.export_runs,
              "held_out_photos": None if held_out is None else len(held_out[1]), "rows": rows,
              "table": _table(rows, args.batches)}
    write_json(args.json, result)
    return result


def _held_out(model: Any, folder: str) -> tuple[np.ndarray, np.ndarray]:
    from vision.data import eval_transform, list_labelled_images, load_rgb
    from vision.data.photos import split_photos

    _, photos = split_photos(list_labelled_images(folder))
    transform = eval_transform(model.data_config())
    return (torch.stack([transform(load_rgb(p.path)) for p in photos]).numpy(), np.array([p.class_id for p in photos]))


def _latency(net: Any, sessions: dict[str, OnnxSeqPar], batches: list[int], runs: int) -> dict[str, dict[int, float]]:
    size = net.config.image_size
    out: dict[str, dict[int, float]] = {name: {} for name in ["torch", *sessions]}
    for batch in batches:
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
        fns = {"torch": lambda x=x: net(x)} | {k: (lambda s=s, a=x.numpy(): s.run(a)) for k, s in sessions.items()}
        with torch.inference_mode():
            times = interleaved_timings(fns, runs)
        for name, t in times.items():
            out[name][batch] = t.wall_ms / batch
    return out


def _export_seconds(model: Any, classes: list[int] | None, path: Path, runs: int) -> float:
    """The median time of exporting the file the classifier makes (with gains), the parent's digest known."""
    from vision.io import model_digest

    digest, seconds = model_digest(model), []
    for _ in range(runs):
        start = time.perf_counter()
        export_classes(model, classes, path, parent_digest=digest)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def _accuracy(net: Any, sessions: dict[str, OnnxSeqPar], held_out: tuple[np.ndarray, np.ndarray]) -> dict:
    """Per runtime: top-1 % on the held-out photos (the model's classes: the full model only) and the share of
    photos whose top-1 equals torch's."""
    images, labels = held_out
    with torch.inference_mode():
        logits = {"torch": torch.cat([net(torch.from_numpy(images[i:i + 32])) for i in range(0, len(images), 32)])
                  .numpy()}
    for name, session in sessions.items():
        logits[name] = np.concatenate([session.run(images[i:i + 32])[0] for i in range(0, len(images), 32)])
    ids = np.array(net.class_ids)
    reference = logits["torch"].argmax(1)
    full = len(ids) > 100
    return {name: {"top1": 100 * float((ids[z.argmax(1)] == labels).mean()) if full else None,
                   "same_top1": 100 * float((z.argmax(1) == reference).mean())} for name, z in logits.items()}


def _table(rows: list[dict[str, Any]], batches: list[int]) -> str:
    def cells(r: dict[str, Any]) -> list[Any]:
        per_frame = [cell(r["ms_per_frame"].get(b), ".2f") for b in (1, 8)]
        return [r["model"], r["runtime"], cell(None if r["bytes"] is None else r["bytes"] / 1e6, ".1f"), *per_frame,
                cell(r.get("top1"), ".1f"), cell(r.get("same_top1"), ".1f", " %"), cell(r["export_s"], ".2f")]

    return markdown_table(HEADER, map(cells, rows), "llrrrrrr")


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    photos = result["held_out_photos"]
    return (f"{machine_line(result['machine'])}; wall clock, median of {result['runs']} runs (exports: "
            f"{result['export_runs']}); top-1 on {photos} held-out photos\n\n{result['table']}")


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
