"""GPU check of the inference path: the packaged default model on CUDA against the CPU, and its latency.

    python -m benchmarks.gpu_inference                     # on a machine with a CUDA GPU (40 s on one H200)
    python -m benchmarks.gpu_inference --device cpu --batches 1 --runs 2   # a functional check on the CPU

Accuracy rows: the default model's logits on real photos (scikit-image's) and random images, on ``--device`` in
float32, float16 and bfloat16, against float32 on the CPU (max abs diff, top-1 agreement); the cat cutout against the
full model's cat logits on the device; the inference path (BatchNorm folded, channels-last trunk) against the
exact one (autograd on). Then ``GuidedClassifier.predict`` with the cue "meow" on the device against the CPU.
Latency rows: the full model, the cat cutout and the per-branch reference loop on the device, median of ``--runs``
synchronised calls per batch size. On a GPU, float32 convolutions run in TF32 by default (PyTorch's
``torch.backends.cudnn.allow_tf32``): expect logit differences of about 1e-2 against the CPU, with the same top-1.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any

import numpy as np
import torch
from PIL import Image

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
from crossmodal import GuidedClassifier
from vision.data import eval_transform
from vision.io import load_seqpar
from vision.model import SeqParModel
from vision.nn.reference import BranchLoop
from xmcommon.cli import exit_process, run_cli

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="The default model's inference path on a GPU against the CPU.")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--runs", type=int, default=20)
    add_json_argument(parser)
    return parser


def _photos(model: SeqParModel) -> tuple[torch.Tensor, Image.Image]:
    """scikit-image's photos and 8 random images, preprocessed; and the cat photo."""
    from skimage import data

    transform = eval_transform(model.data_config())
    rng = np.random.default_rng(0)
    images = [Image.fromarray(getattr(data, name)()) for name in ("chelsea", "coffee", "astronaut", "rocket")]
    images += [Image.fromarray(rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)) for _ in range(8)]
    return torch.stack([transform(i.convert("RGB")) for i in images]), images[0]


def _accuracy_rows(model: SeqParModel, x: torch.Tensor, device: torch.device) -> list[list[Any]]:
    with torch.no_grad():
        reference = model(x)
    rows = []
    for name, dtype in DTYPES.items():
        net = copy.deepcopy(model).to(device=device, dtype=dtype)
        with torch.no_grad():
            out = net(x.to(device, dtype)).float().cpu()
            cut = net.cutout(list(CAT_CLASSES), share_trunk=True)(x.to(device, dtype)).float().cpu()
        with torch.enable_grad():
            exact = net(x.to(device, dtype)).detach().float().cpu()
        rows.append([name, f"{(out - reference).abs().max().item():.2e}",
                     f"{(out.argmax(1) == reference.argmax(1)).float().mean().item():.0%}",
                     f"{(cut - out[:, list(CAT_CLASSES)]).abs().max().item():.2e}",
                     f"{(out - exact).abs().max().item():.2e}"])
    return rows


def _guided_row(model: SeqParModel, photo: Image.Image, device: torch.device) -> list[Any]:
    results = []
    for target in (torch.device("cpu"), device):
        clf = GuidedClassifier(copy.deepcopy(model).to(target))
        results.append(clf.predict(photo, clf.guide(text="meow"), mode="cutout+attend", top_k=5))
    cpu, gpu = results
    return [[p.class_id for p in cpu.predictions], [p.class_id for p in gpu.predictions],
            f"{max(abs(a.prob - b.prob) for a, b in zip(cpu.predictions, gpu.predictions)):.2e}"]


def _latency_rows(model: SeqParModel, batches: list[int], runs: int, device: torch.device) -> list[list[Any]]:
    net = copy.deepcopy(model).to(device)
    nets = {"full": net, "cat cutout": net.cutout(list(CAT_CLASSES), share_trunk=True), "full, loop": BranchLoop(net)}
    size = model.config.image_size
    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=device)

        def call(m: torch.nn.Module, x: torch.Tensor = x) -> None:
            m(x)
            if device.type == "cuda":
                torch.cuda.synchronize()

        with torch.inference_mode():
            times = interleaved_timings({name: (lambda m=m: call(m)) for name, m in nets.items()}, runs, warmup=3)
        rows += [[name, batch, cell(t.wall_ms, ".2f"), cell(batch / t.wall_ms * 1e3, ".0f")]
                 for name, t in times.items()]
    return rows


def main(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if min(args.batches) < 1 or args.runs < 1:
        raise ValueError("--batches and --runs must be >= 1")
    model = load_seqpar("default").eval()
    x, photo = _photos(model)
    result = {"machine": machine(), "device": str(device),
              "accuracy": _accuracy_rows(model, x, device), "guided": _guided_row(model, photo, device),
              "latency": _latency_rows(model, args.batches, args.runs, device)}
    write_json(args.json, result)
    return result


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    return "\n\n".join([
        f"{machine_line(result['machine'])}; device {result['device']}",
        markdown_table(("dtype", "max abs logit diff vs CPU fp32", "top-1 agreement", "cat cutout vs full",
                        "inference path vs exact"), result["accuracy"]),
        markdown_table(("CPU top-5 ('meow', cutout+attend)", "device top-5", "max abs prob diff"), [result["guided"]]),
        markdown_table(("model", "batch", "latency (ms)", "images/s"), result["latency"], "lrrr"),
    ])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
