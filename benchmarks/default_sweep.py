"""Sweep of the default-model recipe over student resolution and branch width, scored on the held-out photos.

    PYTHONPATH=. python benchmarks/default_sweep.py --images ../shared/data/imagenet-samples \
        --superclasses ../shared/data/imagenet-superclass/superclass.txt

For each (image size, hidden width) it builds the model exactly as `vision.build_default` does and
reports unguided top-1, guided top-1 (argmax within the true superclass: what the superclass cutout
outputs, cutouts being exact), full and cat-cutout GMACs, params and fp16 size on disk.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from vision.build_default import BuildSettings, assemble, branch_logits, collect_views, fit_branches
from vision.cost import measure
from vision.photos import eval_transform, list_imagenet_photos, load_rgb, split_photos
from vision.pretrained import LITE_MEAN, LITE_STD, create_pretrained_lite
from vision.wordnet_tree import superclass_tree

CAT_CLASSES = [281, 282, 283, 284, 285]


def top1(logits: torch.Tensor, labels: torch.Tensor, groups: list[list[int]]) -> tuple[float, float]:
    """(unguided top-1, top-1 within each photo's true superclass)."""
    group_of = {c: members for members in groups for c in members}
    guided = [members[int(row[members].argmax())] == int(t)
              for row, t in zip(logits, labels) for members in [group_of[int(t)]]]
    return (logits.argmax(1) == labels).float().mean().item(), sum(guided) / len(guided)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--superclasses", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 168, 176, 192])
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 44, 64])
    parser.add_argument("--views", type=int, default=BuildSettings().views)
    return parser


@torch.no_grad()
def main(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(1)
    build, held_out = split_photos(list_imagenet_photos(args.images))
    tree = superclass_tree(args.superclasses)
    groups = [list(node["children"]) for node in tree["children"]]
    teacher = create_pretrained_lite("lite0")
    labels = torch.tensor([p.class_index for p in held_out])
    teacher_tf = eval_transform(224, 0.875, LITE_MEAN, LITE_STD)
    teacher_logits = torch.cat([teacher(teacher_tf(load_rgb(p.path))[None]) for p in held_out])
    t_top1, t_guided = top1(teacher_logits, labels, groups)
    teacher_gmacs = measure(teacher, (1, 3, 224, 224)).gmacs
    rows = [dict(size=224, hidden=1280, top1=t_top1, guided=t_guided, full_gmacs=teacher_gmacs, cat_gmacs=teacher_gmacs,
                 params=sum(p.numel() for p in teacher.parameters()), mb=None)]
    print(f"held-out photos {len(held_out)}; teacher tf_efficientnet_lite0@224: top-1 {t_top1:.3f}, "
          f"within true superclass {t_guided:.3f}, {teacher_gmacs:.3f} GMACs")
    print("| size | hidden | top-1 unguided | top-1 guided | full GMACs | cat-cutout GMACs (x teacher) | params | fp16 MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in args.sizes:
        settings = BuildSettings(image_size=size, views=args.views)
        pooled = collect_views(build, teacher, settings)
        held_pooled = collect_views(held_out, teacher, BuildSettings(image_size=size, views=0))  # centre crops only
        for hidden in args.hidden:
            fits = fit_branches(pooled, teacher.classifier, groups, hidden)
            u, g = top1(branch_logits(held_pooled, fits), labels, groups)
            model = assemble(BuildSettings(image_size=size, hidden=hidden, views=args.views), tree, teacher, fits, {})
            full, cat = measure(model, (1, 3, size, size)), measure(model.cutout(CAT_CLASSES), (1, 3, size, size))
            with tempfile.TemporaryDirectory() as tmp:
                model.half().save_pretrained(tmp)
                mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
            rows.append(dict(size=size, hidden=hidden, top1=u, guided=g, full_gmacs=full.gmacs, cat_gmacs=cat.gmacs,
                             params=full.params, mb=mb))
            print(f"| {size} | {hidden} | {u:.3f} | {g:.3f} | {full.gmacs:.3f} | {cat.gmacs:.3f} "
                  f"({cat.gmacs / teacher_gmacs:.3f}) | {full.params:,} | {mb:.1f} |", flush=True)
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
