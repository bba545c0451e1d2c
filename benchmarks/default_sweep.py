"""Sweep of the default-model recipe, scored on a dev split of the BUILD photos (never the held-out ones).

    PYTHONPATH=. python benchmarks/default_sweep.py --images ../shared/data/imagenet-samples \
        --wordnet mappings/data/wordnet_imagenet.json \
        --superclasses ../shared/data/imagenet-superclass/superclass.txt

The build photos are split once more (`is_dev`: one in five by a second byte of the name hash): the
branches are fitted on the views of the rest, exactly as `vision.build_default` fits them, and scored on
the dev photos' centre crops. For each student size and (max group, hidden width, ridge) it reports
unguided top-1, guided top-1 (argmax within the photo's group of the model's own tree: what that
group's cutout outputs, cutouts being exact), agreement with the teacher, full and cat-cutout GMACs,
params and size on disk (fp16 branches, trunk from the weights package).
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


def is_dev(photo: LabelledPhoto) -> bool:
    """One build photo in five (second byte of the name's sha256) scores the sweep."""
    return hashlib.sha256(photo.path.name.encode()).digest()[1] % 5 == 0


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
    parser.add_argument("--configs", nargs="+", default=["0:44:-1", "0:58:0.03", "50:220:0.03", "150:490:0.03"],
                        help="max_group:hidden:ridge (ridge -1: the old recipe, teacher rows and a mean bias)")
    parser.add_argument("--views", type=int, default=BuildSettings().views)
    return parser


@torch.no_grad()
def main(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(1)
    build, _ = split_photos(list_imagenet_photos(args.images))
    train, dev = [p for p in build if not is_dev(p)], [p for p in build if is_dev(p)]
    teacher = create_pretrained_lite("lite0")
    labels = torch.tensor([p.class_index for p in dev])
    teacher_tf = eval_transform(224, 0.875, LITE_MEAN, LITE_STD)
    teacher_logits = torch.cat([teacher(teacher_tf(load_rgb(p.path))[None]) for p in dev])
    teacher_cost = measure(teacher, (1, 3, 224, 224))
    print(f"fit on {len(train)} build photos x {1 + args.views} views, scored on {len(dev)} dev build photos; "
          f"teacher tf_efficientnet_lite0@224: top-1 {(teacher_logits.argmax(1) == labels).float().mean():.3f}, "
          f"{teacher_cost.gmacs:.3f} GMACs")
    print("| size | groups (max) | hidden | fit | top-1 unguided | top-1 guided (teacher) | agree w/ teacher "
          "| full GMACs | cat-cutout GMACs (x teacher) | params | MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for size in args.sizes:
        pooled = collect_views(train, teacher, BuildSettings(image_size=size, views=args.views))
        dev_pooled = collect_views(dev, teacher, BuildSettings(image_size=size, views=0))  # centre crops only
        for spec in args.configs:
            max_group, hidden, ridge = int(spec.split(":")[0]), int(spec.split(":")[1]), float(spec.split(":")[2])
            settings = BuildSettings(image_size=size, hidden=hidden, max_group=max_group, ridge=max(ridge, 0.0))
            tree = build_tree(settings, args.wordnet, args.superclasses)
            groups = [list(node["children"]) for node in tree["children"]]
            fits = fit_branches(pooled, teacher.classifier, groups, hidden, settings.ridge)
            if ridge < 0:
                fits = [_teacher_rows(fit, pooled, teacher.classifier) for fit in fits]
            u, g = top1(branch_logits(dev_pooled, fits), labels, groups)
            _, t_g = top1(teacher_logits, labels, groups)
            agree = (branch_logits(dev_pooled, fits).argmax(1) == teacher_logits.argmax(1)).float().mean().item()
            model = assemble(settings, tree, teacher, fits, {})
            full, cat = measure(model, (1, 3, size, size)), measure(model.cutout(CAT_CLASSES), (1, 3, size, size))
            with tempfile.TemporaryDirectory() as tmp:
                model.half().save_pretrained(tmp)
                mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
            fit_name = "teacher rows + mean bias" if ridge < 0 else f"ridge {ridge:g}"
            rows.append(dict(size=size, groups=len(groups), max_group=max_group, hidden=hidden, fit=fit_name, top1=u,
                             guided=g, teacher_guided=t_g, agree=agree, full_gmacs=full.gmacs, cat_gmacs=cat.gmacs,
                             params=full.params, mb=mb))
            print(f"| {size} | {len(groups)} ({max(map(len, groups))}) | {hidden} | {fit_name} | {u:.3f} | {g:.3f} "
                  f"({t_g:.3f}) | {agree:.3f} | {full.gmacs:.3f} | {cat.gmacs:.3f} ({cat.macs / teacher_cost.macs:.3f}) "
                  f"| {full.params:,} | {mb:.1f} |", flush=True)
    return rows


def _teacher_rows(fit, pooled: torch.Tensor, classifier: torch.nn.Linear):
    """The previous recipe's fit on the same channels: the teacher's classifier rows, dropped channels' mean in the bias."""
    rows, mean = classifier.weight[fit.members], pooled.mean(0)
    weight = rows[:, fit.inner].contiguous()
    return type(fit)(fit.members, fit.inner, weight, classifier.bias[fit.members] + rows @ mean - weight @ mean[fit.inner])


if __name__ == "__main__":
    main(get_args_parser().parse_args())
