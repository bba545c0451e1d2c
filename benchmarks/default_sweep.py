"""Sweep of the default-model recipe, scored by 5-fold cross-validation on the BUILD photos (never the held-out ones).

    python -m benchmarks.default_sweep --images ../shared/data/imagenet-samples \
        --wordnet mappings/data/wordnet_imagenet.json \
        --superclasses ../shared/data/imagenet-superclass/superclass.txt

The build photos are split into 5 folds (`fold_of`: a second byte of the name hash). For each fold, the
branches are fitted on the views of the other four folds, exactly as `vision.build_default` fits them,
and scored on the fold's centre crops; every build photo is scored once. Per student size it reports the
teacher's own full head at that size (the ceiling of any head slice) and, per (max group, min group,
width, ridge), unguided top-1, guided top-1 (argmax within the photo's group of the model's own tree:
what that group's cutout outputs, cutouts being exact), agreement with the teacher at 224 px, full and
cat-cutout GMACs, params and size on disk (fp16 branches, trunk from the weights package).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import torch

from vision.build_default import BuildSettings, assemble, branch_logits, build_tree, collect_views, fit_branches
from vision.cost import measure
from vision.photos import LabelledPhoto, eval_transform, list_imagenet_photos, load_rgb, split_photos
from vision.pretrained import LITE_MEAN, LITE_STD, create_pretrained_lite

CAT_CLASSES = [281, 282, 283, 284, 285]
FOLDS = 5


def fold_of(photo: LabelledPhoto) -> int:
    """The photo's cross-validation fold (second byte of the name's sha256)."""
    return hashlib.sha256(photo.path.name.encode()).digest()[1] % FOLDS


def top1(logits: torch.Tensor, labels: torch.Tensor, groups: list[list[int]]) -> tuple[float, float]:
    """(unguided top-1, top-1 within each photo's group)."""
    group_of = {c: members for members in groups for c in members}
    guided = [members[int(row[members].argmax())] == int(t)
              for row, t in zip(logits, labels) for members in [group_of[int(t)]]]
    return (logits.argmax(1) == labels).float().mean().item(), sum(guided) / len(guided)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--wordnet", required=True)
    parser.add_argument("--superclasses", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 168])
    parser.add_argument("--configs", nargs="+",
                        default=["150:1:490:0.03", "150:1:700:0.01", "0:1:40:0.01", "60:15:850:0.01",
                                 "100:20:1150:0.01"],
                        help="max_group:min_group:width:ridge (max_group 0: the 558 direct WordNet parents)")
    parser.add_argument("--views", type=int, default=BuildSettings().views)
    parser.add_argument("--threads", type=int, default=1)
    return parser


@torch.no_grad()
def main(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    build, _ = split_photos(list_imagenet_photos(args.images))
    folds = torch.tensor([fold_of(p) for p in build])
    labels = torch.tensor([p.class_index for p in build])
    teacher = create_pretrained_lite("lite0")
    teacher_tf = eval_transform(224, 0.875, LITE_MEAN, LITE_STD)
    teacher_logits = torch.cat([teacher(teacher_tf(load_rgb(p.path))[None]) for p in build])
    teacher_cost = measure(teacher, (1, 3, 224, 224))
    print(f"{FOLDS}-fold cross-validation on {len(build)} build photos x {1 + args.views} views; teacher "
          f"tf_efficientnet_lite0@224: top-1 {(teacher_logits.argmax(1) == labels).float().mean():.3f}, "
          f"{teacher_cost.gmacs:.3f} GMACs")
    print("| size | groups (sizes) | width | ridge | top-1 unguided | top-1 guided (teacher) | agree w/ teacher "
          "| full GMACs | cat-cutout GMACs (x teacher) | params | MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for size in args.sizes:
        pooled = collect_views(build, teacher, BuildSettings(image_size=size, views=args.views))
        pooled = pooled.view(len(build), 1 + args.views, -1)
        ceiling = (teacher.classifier(pooled[:, 0]).argmax(1) == labels).float().mean().item()
        print(f"| {size} | teacher's full head at {size} px | 1280 | - | {ceiling:.3f} | | | | | | |", flush=True)
        for spec in args.configs:
            parts = spec.split(":")
            (max_group, min_group, width), ridge = map(int, parts[:3]), float(parts[3])
            settings = BuildSettings(image_size=size, width=width, max_group=max_group, min_group=min_group,
                                     ridge=ridge)
            tree = build_tree(settings, args.wordnet, args.superclasses)
            groups = [list(node["children"]) for node in tree["children"]]
            logits = torch.empty(len(build), 1000)
            for fold in range(FOLDS):
                fits = fit_branches(pooled[folds != fold].flatten(0, 1), teacher.classifier, groups, width, ridge)
                logits[folds == fold] = branch_logits(pooled[folds == fold, 0], fits)
            u, g = top1(logits, labels, groups)
            _, t_g = top1(teacher_logits, labels, groups)
            agree = (logits.argmax(1) == teacher_logits.argmax(1)).float().mean().item()
            model = assemble(settings, tree, teacher, fits, {})
            full, cat = measure(model, (1, 3, size, size)), measure(model.cutout(CAT_CLASSES), (1, 3, size, size))
            with tempfile.TemporaryDirectory() as tmp:
                model.half().save_pretrained(tmp)
                mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
            sizes = f"{min(map(len, groups))}-{max(map(len, groups))}"
            rows.append(dict(size=size, groups=len(groups), max_group=max_group, min_group=min_group, width=width,
                             ridge=ridge, top1=u, guided=g, teacher_guided=t_g, agree=agree, full_gmacs=full.gmacs,
                             cat_gmacs=cat.gmacs, params=full.params, mb=mb))
            print(f"| {size} | {len(groups)} ({sizes}) | {width} | {ridge:g} | {u:.3f} | {g:.3f} ({t_g:.3f}) "
                  f"| {agree:.3f} | {full.gmacs:.3f} | {cat.gmacs:.3f} ({cat.macs / teacher_cost.macs:.3f}) "
                  f"| {full.params:,} | {mb:.1f} |", flush=True)
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
