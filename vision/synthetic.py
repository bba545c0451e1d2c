"""``python -m vision.synthetic --out data/synthetic``: write the procedural 10-class image set (see
:mod:`vision.data.synthetic`)."""

from __future__ import annotations

import argparse

from xmcommon.cli import exit_process, run_cli

from .data.synthetic import generate


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Write the procedural 10-class shapes x colors x textures image set.")
    p.add_argument("--out", required=True, help="output folder (gets train/ and val/)")
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=1, help="parallel writer processes")
    return p


def main(args: argparse.Namespace) -> dict:
    return generate(args.out, train_per_class=args.train_per_class, val_per_class=args.val_per_class,
                    size=args.size, seed=args.seed, processes=args.processes).to_dict()


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    exit_process(cli())
