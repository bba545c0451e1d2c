"""``python -m vision.build_default --images DIR --tree FILE``: build the packaged default model offline.

    python -m vision.build_default --images ../shared/data/imagenet-samples \
        --tree configs/hierarchies/imagenet1k_wordnet_groups.yaml --threads 1

The recipe (deterministic for a fixed ``--threads``) is in :mod:`vision.zoo.build`.
"""

from __future__ import annotations

import argparse

import torch

from xmcommon.cli import exit_process, run_cli

from .zoo import DEFAULT_MODEL_DIR
from .zoo.build import BuildSettings, build_default_model


def get_args_parser() -> argparse.ArgumentParser:
    defaults = BuildSettings()
    parser = argparse.ArgumentParser(description="Build the packaged default model (NHL on EfficientNet-Lite), offline.")
    parser.add_argument("--images", required=True, help="folder of ImageNet photos named {wnid}_{name}.JPEG")
    parser.add_argument("--tree", required=True,
                        help="2-level class tree file, e.g. configs/hierarchies/imagenet1k_wordnet_groups.yaml")
    parser.add_argument("--out", default=str(DEFAULT_MODEL_DIR), help="output model directory")
    parser.add_argument("--variant", default=defaults.variant, choices=["lite0", "lite1", "lite2"])
    for name in ("image_size", "teacher_size", "width", "views", "adapt_epochs", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("ridge", "adapt_lr"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=True, help="store weights as float16")
    return parser


def main(args: argparse.Namespace) -> dict:
    """Build and save the default model; returns a summary."""
    torch.set_num_threads(args.threads)
    settings = BuildSettings(**{k: getattr(args, k) for k in BuildSettings().to_dict()})
    return build_default_model(args.images, args.tree, settings, args.out, fp16=args.fp16)


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    exit_process(cli())
