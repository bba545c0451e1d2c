"""The packaged default model against its teacher on the held-out photos: top-1, GMACs, CPU latency.

    python -m benchmarks.default_model --images ../shared/data/imagenet-samples

Unguided: the full model, argmax over 1000 classes. Guided: the cue is the photo's true WordNet
superclass; the model is cut out to that superclass's classes and the superclass gets an attention
gain; argmax over the kept classes. Latency: batch 1, median of `--runs` runs, teacher and models
timed side by side (interleaved) in one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from vision import load_seqpar
from vision.cost import measure
from vision.model import DEFAULT_MODEL_DIR, SeqParModel
from vision.photos import eval_transform, list_imagenet_photos, load_rgb, split_photos
from vision.pretrained import LITE_MEAN, LITE_STD, create_pretrained_lite

CAT_CLASSES = [281, 282, 283, 284, 285]


def superclass_of(model: SeqParModel) -> dict[int, tuple[str, list[int]]]:
    """class id -> (superclass node name, its class ids), from the model's 2-level tree."""
    out = {}
    for node in model.config.hierarchy["children"]:
        members = [model.config.class_ids[i] for i in node["children"]]
        for cid in members:
            out[cid] = (node["name"], members)
    return out


@torch.no_grad()
def accuracy(model: SeqParModel, teacher: torch.nn.Module, photos: list, gain: float) -> dict:
    meta = model.config.metadata
    student_tf = eval_transform(model.config.image_size, meta["data_config"]["crop_pct"], LITE_MEAN, LITE_STD)
    teacher_tf = eval_transform(meta["teacher"]["image_size"], meta["teacher"]["crop_pct"], LITE_MEAN, LITE_STD)
    parents = superclass_of(model)
    cutouts: dict[str, SeqParModel] = {}
    hits = {"teacher": 0, "teacher_guided": 0, "unguided": 0, "guided": 0, "guided_gain1": 0, "agree": 0}
    for photo in photos:
        image = load_rgb(photo.path)
        t_logits = teacher(teacher_tf(image).unsqueeze(0))[0]
        x = student_tf(image).unsqueeze(0)
        s_logits = model(x)[0]
        name, members = parents[photo.class_index]
        if name not in cutouts:
            cutouts[name] = model.cutout(members, share_trunk=True).eval()
        cut = cutouts[name]
        hits["teacher"] += int(t_logits.argmax() == photo.class_index)
        hits["teacher_guided"] += int(members[int(t_logits[members].argmax())] == photo.class_index)
        hits["unguided"] += int(s_logits.argmax() == photo.class_index)
        hits["agree"] += int(s_logits.argmax() == t_logits.argmax())
        hits["guided"] += int(members[int(cut(x, gains={name: gain})[0].argmax())] == photo.class_index)
        hits["guided_gain1"] += int(members[int(cut(x)[0].argmax())] == photo.class_index)
    return {k: v / len(photos) for k, v in hits.items()}


@torch.no_grad()
def latency(models: dict[str, tuple[torch.nn.Module, int]], runs: int) -> dict[str, float]:
    """Median batch-1 latency (ms) per model, the models interleaved run by run."""
    inputs = {name: torch.randn(1, 3, size, size) for name, (_, size) in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for name, (model, _) in models.items():
        model(inputs[name])  # warm-up
    for _ in range(runs):
        for name, (model, _) in models.items():
            start = time.perf_counter()
            model(inputs[name])
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="the photo folder the model was built from")
    parser.add_argument("--model", default="default", help="model directory or 'default'")
    parser.add_argument("--gain", type=float, default=1.5, help="attention gain of the cued superclass")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this JSON file")
    return parser


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model = load_seqpar(args.model).eval()
    teacher_name = model.config.metadata["teacher"]["model"]
    teacher = create_pretrained_lite(teacher_name.removeprefix("tf_efficientnet_"))
    _, held_out = split_photos(list_imagenet_photos(args.images))
    acc = accuracy(model, teacher, held_out, args.gain)
    size, t_size = model.config.image_size, model.config.metadata["teacher"]["image_size"]
    cat = model.cutout(CAT_CLASSES).eval()
    costs = {"teacher": measure(teacher, (1, 3, t_size, t_size)), "full": measure(model, (1, 3, size, size)),
             "cat cutout": measure(cat, (1, 3, size, size))}
    ms = latency({"teacher": (teacher, t_size), "cat cutout": (cat, size), "full": (model, size)}, args.runs)
    directory = DEFAULT_MODEL_DIR if args.model == "default" else Path(args.model)
    result = {
        "held_out_photos": len(held_out), "accuracy": acc,
        "gmacs": {k: c.gmacs for k, c in costs.items()}, "params": {k: c.params for k, c in costs.items()},
        "latency_ms": ms, "size_mb": sum(p.stat().st_size for p in directory.iterdir()) / 1e6,
        "threads": args.threads, "runs": args.runs,
    }
    print(f"held-out photos: {len(held_out)}  (CPU shared with other jobs; torch threads {args.threads})")
    print("| model | top-1 unguided | top-1 guided (superclass cue) | GMACs | params | median ms (batch 1) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| teacher {teacher_name} @{t_size} | {acc['teacher']:.3f} | {acc['teacher_guided']:.3f} | "
          f"{costs['teacher'].gmacs:.3f} | {costs['teacher'].params:,} | {ms['teacher']:.1f} |")
    print(f"| default NHL @{size} | {acc['unguided']:.3f} | {acc['guided']:.3f} (gain {args.gain}; "
          f"{acc['guided_gain1']:.3f} at gain 1) | {costs['full'].gmacs:.3f} | {costs['full'].params:,} | {ms['full']:.1f} |")
    print(f"| default, cat cutout 281-285 | - | - | {costs['cat cutout'].gmacs:.3f} | {costs['cat cutout'].params:,} | "
          f"{ms['cat cutout']:.1f} |")
    print(f"student/teacher top-1 {acc['unguided'] / acc['teacher']:.3f}; guided - teacher "
          f"{100 * (acc['guided'] - acc['teacher']):+.1f} pts; cat cutout GMACs {costs['cat cutout'].macs / costs['teacher'].macs:.3f}"
          f" x teacher, latency {ms['cat cutout'] / ms['teacher']:.3f} x teacher; size on disk {result['size_mb']:.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
