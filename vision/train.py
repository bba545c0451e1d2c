"""``python -m vision.train --config configs/x.yaml [section.key=value ...]``: train a SeqPar model or a baseline.

    torchrun --nproc_per_node 8 -m vision.train --config configs/imagenet1k/nhl_convnextv2_tiny_frozen.yaml
    python -m vision.train --config ... --resume runs/x/last.ckpt

The engine is :mod:`vision.training`; only rank 0 prints the result (JSON).
"""

from __future__ import annotations

import argparse
import os

from xmcommon.cli import exit_process, render_json, run_cli

from .distributed import teardown_distributed
from .training import load_config, train


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a SeqPar model (or a timm baseline) on an ImageFolder dataset.")
    p.add_argument("--config", required=True, help="YAML config with data/model/optim/run sections")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. data.root=/data optim.lr=0.05")
    p.add_argument("--resume", help="checkpoint to continue from (e.g. runs/x/last.ckpt)")
    p.add_argument("--dry-run", action="store_true", help="build everything, run 2 training steps and 2 val batches, write nothing")
    p.add_argument("--stop-after-steps", type=int, help="checkpoint and exit after this many optimizer steps (e.g. to fit a job slot)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


def main(args: argparse.Namespace) -> dict:
    cfg = load_config(args.config, args.overrides)
    return train(cfg, resume=args.resume, dry_run=args.dry_run, stop_after_steps=args.stop_after_steps,
                 progress=not args.no_progress).to_dict()


def _render(result: dict, args: argparse.Namespace) -> str | None:
    return render_json(result) if int(os.environ.get("RANK", "0")) == 0 else None


def cli(argv: list[str] | None = None) -> int:
    try:
        return run_cli(get_args_parser(), main, argv, _render)
    finally:
        teardown_distributed()


if __name__ == "__main__":
    exit_process(cli())
