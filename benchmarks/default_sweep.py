"""Sweep of the default-model recipe, scored by 5-fold cross-validation on the BUILD photos (never the held-out ones).

    python -m benchmarks.default_sweep --images ../shared/data/imagenet-samples
    python -m benchmarks.default_sweep --images ../shared/data/imagenet-samples --limit 40 --views 1 \
        --sizes 160 --configs 100:20:300:0.01 0:1:40:0.01                               # a quick check

The build photos (``vision.data.photos.split_photos``) are split into 5 folds (``fold_of``: a second byte of
the name hash). For each fold, the branches are fitted on the build views (``vision.zoo.build.collect_views``:
centre crop and ``--views`` augmented crops per photo, the build's own augmentation) of the other four folds,
exactly as ``vision.zoo.build.fit_branches`` fits them, and scored on the fold's photos preprocessed like the
product (``vision.data.eval_transform`` of the model's data config at that size: what ``assemble`` writes
into the config); every build photo is scored once. The trunk is the teacher's own (the build's norm
adaptation, ``--adapt-epochs``, is not part of the sweep).

Per student size it reports the teacher's own full head at that size (the ceiling of any head slice) and,
per tree and (width, ridge): unguided top-1, guided top-1 (argmax within the photo's group of the model's
own tree: what that group's cutout outputs, cutouts being exact), agreement with the teacher at 224 px, full
and cat-cutout GMACs, params and size on disk (fp16 branches, trunk from the weights package).

Configs are ``max_group:min_group:width:ridge``. The tree is ``mappings.trees.wordnet_group_tree`` (WordNet
groups of at most ``max_group`` classes, groups under ``min_group`` merged with their small siblings;
``100:20`` is the shipped ``configs/hierarchies/imagenet1k_wordnet_groups.yaml``); ``max_group`` 0 asks
for ``mappings.trees.wordnet_tree(imagenet_hierarchy(), 2)``, the 556 direct WordNet parents (``min_group``
is then ignored). The WordNet data are the packaged ones (``mappings``), so the former ``--wordnet`` and
``--superclasses`` files are no longer read.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.common import (
    CAT_CLASSES,
    add_json_argument,
    machine,
    machine_line,
    markdown_table,
    top1,
    within_groups,
    write_json,
)
from mappings import imagenet_hierarchy, wordnet_group_tree, wordnet_tree
from vision import Preprocessing
from vision.cost import measure
from vision.data import LabelledImage, eval_transform, list_labelled_images, load_rgb
from vision.data.photos import split_photos
from vision.eval.metrics import rank
from vision.zoo.build import BuildSettings, assemble, branch_logits, collect_views, fit_branches
from vision.zoo.lite import create_pretrained_lite, timm_name
from xmcommon.cli import exit_process, run_cli

FOLDS = 5
VARIANT = "lite0"
TEACHER_SIZE = 224
BATCH = 64


@dataclass(frozen=True)
class SweepConfig:
    """One point of the sweep: the tree (``max_group`` 0: the direct WordNet parents), width and ridge."""

    max_group: int
    min_group: int
    width: int
    ridge: float

    @classmethod
    def parse(cls, spec: str) -> SweepConfig:
        parts = spec.split(":")
        try:
            if len(parts) != 4:
                raise ValueError
            config = cls(int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3]))
        except ValueError:
            raise ValueError(f"--configs {spec!r}: expected max_group:min_group:width:ridge, e.g. 100:20:1150:0.01") from None
        if config.max_group < 0 or config.width < 1 or config.ridge < 0:
            raise ValueError(f"--configs {spec!r}: expected max_group >= 0, width >= 1 and ridge >= 0")
        return config

    def tree(self) -> dict:
        if self.max_group == 0:
            return wordnet_tree(imagenet_hierarchy(), 2)
        return wordnet_group_tree(imagenet_hierarchy(), self.max_group, self.min_group)


def fold_of(photo: LabelledImage) -> int:
    """The photo's cross-validation fold (second byte of the name's sha256; the first decides the hold-out)."""
    return hashlib.sha256(photo.path.name.encode()).digest()[1] % FOLDS


@torch.no_grad()
def eval_features(network: torch.nn.Module, photos: list[LabelledImage], data_config: dict) -> torch.Tensor:
    """The network's pooled head activations (its classifier's input) on ``photos`` through the eval pipeline."""
    transform = eval_transform(data_config)
    pooled = []
    for start in range(0, len(photos), BATCH):
        x = torch.stack([transform(load_rgb(p.path)) for p in photos[start:start + BATCH]])
        pooled.append(network.forward_head(network.forward_features(x), pre_logits=True))
    return torch.cat(pooled)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Cross-validated sweep of the default-model recipe on the build photos.")
    parser.add_argument("--images", required=True, help="the photo folder the default model is built from")
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 168], help="student image sizes")
    parser.add_argument("--configs", nargs="+",
                        default=["150:1:490:0.03", "150:1:700:0.01", "0:1:40:0.01", "60:15:850:0.01",
                                 "100:20:1150:0.01"],
                        help="max_group:min_group:width:ridge (max_group 0: the 556 direct WordNet parents)")
    parser.add_argument("--views", type=int, default=BuildSettings().views, help="augmented views per photo")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="use the first N build photos only (a quick check)")
    parser.add_argument("--wordnet", help=argparse.SUPPRESS)  # removed: the WordNet data are packaged
    parser.add_argument("--superclasses", help=argparse.SUPPRESS)  # removed: max_group 0 in --configs
    add_json_argument(parser)
    return parser


@torch.no_grad()
def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.wordnet or args.superclasses:
        raise ValueError("--wordnet and --superclasses are no longer used: the trees come from the packaged WordNet "
                         "data (mappings.trees); ask for the direct WordNet parents with max_group 0 in --configs")
    configs = [SweepConfig.parse(spec) for spec in args.configs]
    if args.views < 0 or min(args.sizes) < 32 or (args.limit is not None and args.limit < 2):
        raise ValueError("expected --views >= 0, --sizes >= 32 and --limit >= 2")
    torch.set_num_threads(args.threads)
    build, _ = split_photos(list_labelled_images(args.images))
    build = build[: args.limit]
    folds = torch.tensor([fold_of(p) for p in build])
    labels = torch.tensor([p.class_id for p in build])
    teacher = create_pretrained_lite(VARIANT)
    backbone = timm_name(VARIANT)
    teacher_logits = teacher.classifier(
        eval_features(teacher, build, Preprocessing.for_backbone(backbone).data_config(TEACHER_SIZE)))
    teacher_top = rank(teacher_logits, 1)[:, 0]
    teacher_cost = measure(teacher, (1, 3, TEACHER_SIZE, TEACHER_SIZE))
    trees = {config: config.tree() for config in configs}
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        data_config = Preprocessing.for_backbone(backbone).data_config(size)  # what `assemble` writes into the config
        views = collect_views(build, teacher, BuildSettings(image_size=size, views=args.views))
        views = views.view(len(build), 1 + args.views, -1)
        scored = eval_features(teacher, build, data_config)
        rows.append({"kind": "ceiling", "size": size, "tree": f"teacher's full head at {size} px",
                     "width": teacher.classifier.in_features, "top1": top1(teacher.classifier(scored), labels)})
        for config in tqdm(configs, desc=f"configs at {size} px", unit="config"):
            tree = trees[config]
            groups = [list(node["children"]) for node in tree["children"]]
            logits = torch.empty(len(build), 1000)
            for fold in range(FOLDS):
                if not (folds == fold).any():
                    continue
                fits = fit_branches(views[folds != fold].flatten(0, 1), teacher.classifier, groups, config.width,
                                    config.ridge)
                logits[folds == fold] = branch_logits(scored[folds == fold], fits)
            # Assembled from the last fold's fits, only for its costs and size on disk (both independent of the fits).
            settings = BuildSettings(image_size=size, width=config.width, ridge=config.ridge, views=args.views)
            model = assemble(settings, tree, teacher, fits, {})
            if model.data_config() != data_config:
                raise RuntimeError("the sweep scores with another preprocessing than the assembled model's")
            full = measure(model, (1, 3, size, size))
            cat = measure(model.cutout(list(CAT_CLASSES)), (1, 3, size, size))
            with tempfile.TemporaryDirectory() as tmp:
                model.half().save_pretrained(tmp)
                mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
            rows.append({
                "kind": "config", "size": size, "tree": "direct WordNet parents" if config.max_group == 0 else
                f"WordNet groups <= {config.max_group}, merged < {config.min_group}",
                "groups": len(groups), "group_sizes": [min(map(len, groups)), max(map(len, groups))],
                "width": config.width, "ridge": config.ridge, "top1": top1(logits, labels),
                "guided": top1(within_groups(logits, labels, groups), labels),
                "teacher_guided": top1(within_groups(teacher_logits, labels, groups), labels),
                "agree": top1(logits, teacher_top), "full_gmacs": full.gmacs, "cat_gmacs": cat.gmacs,
                "cat_vs_teacher_macs": cat.macs / teacher_cost.macs, "params": full.params, "mb": mb,
            })
    result = {"build_photos": len(build), "folds": FOLDS, "views": args.views, "machine": machine(),
              "teacher": {"model": f"{backbone}@{TEACHER_SIZE}", "top1": top1(teacher_logits, labels),
                          "gmacs": teacher_cost.gmacs},
              "rows": rows, "table": _table(rows)}
    write_json(args.json, result)
    return result


def _table(rows: list[dict[str, Any]]) -> str:
    def cells(r: dict[str, Any]) -> list[Any]:
        if r["kind"] == "ceiling":
            return [r["size"], r["tree"], None, r["width"], None, f"{r['top1']:.3f}"] + [None] * 6
        low, high = r["group_sizes"]
        return [r["size"], r["tree"], f"{r['groups']} ({low}-{high})", r["width"], f"{r['ridge']:g}", f"{r['top1']:.3f}",
                f"{r['guided']:.3f} ({r['teacher_guided']:.3f})", f"{r['agree']:.3f}", f"{r['full_gmacs']:.3f}",
                f"{r['cat_gmacs']:.3f} ({r['cat_vs_teacher_macs']:.3f})", f"{r['params']:,}", f"{r['mb']:.1f}"]

    header = ("size", "tree", "groups (sizes)", "width", "ridge", "top-1 unguided", "top-1 guided (teacher)",
              "agree w/ teacher", "full GMACs", "cat-cutout GMACs (x teacher)", "params", "MB")
    return markdown_table(header, map(cells, rows), "rllrrrrrrrrr")


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    teacher = result["teacher"]
    return (f"{result['folds']}-fold cross-validation on {result['build_photos']} build photos x {1 + result['views']} "
            f"views; teacher {teacher['model']}: top-1 {teacher['top1']:.3f}, {teacher['gmacs']:.3f} GMACs; "
            f"{machine_line(result['machine'])}\n\n{result['table']}")


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, render)


if __name__ == "__main__":
    exit_process(cli())
