"""Parameter and MAC accounting for SeqPar models (and any ``nn.Module``).

MACs are counted with ``torch.utils.flop_counter`` (convolutions and matrix products; one MAC =
two FLOPs), on a real forward pass of the given input size.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from xmcommon.cli import exit_process, render_json, run_cli
from xmcommon.ids import parse_ids

from .hierarchy import Hierarchy
from .io import load_seqpar
from .model import SeqParModel
from .nn.meta import meta_device
from .presets import available_presets, preset


@dataclass(frozen=True)
class PartCost:
    """Cost of one part of a model (the trunk, a tree level, or one node of a level)."""

    name: str
    params: int
    macs: int


@dataclass(frozen=True)
class Cost:
    """Parameters and multiply-accumulates of a forward pass."""

    params: int
    macs: int
    parts: tuple[PartCost, ...] = field(default=())

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gmacs": self.gmacs}


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def measure(model: nn.Module, input_size: Sequence[int] | None = None) -> Cost:
    """Params and MACs of ``model`` on a zero input of ``input_size`` (default: one image at the model's own
    ``config.image_size`` for a :class:`SeqParModel`, else 224 px).

    For a :class:`SeqParModel` the parts are the trunk, each tree level, and the average node of
    each level (all nodes of a level share one architecture).
    """
    if input_size is None:
        size = model.config.image_size if isinstance(model, SeqParModel) else 224
        input_size = (1, 3, size, size)
    was_training = model.training
    model.eval()
    weight = next(iter(model.parameters()))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(*input_size, device=weight.device, dtype=weight.dtype))
    model.train(was_training)
    flops = counter.get_flop_counts()
    root = type(model).__name__
    macs_of = lambda name: sum(flops.get(f"{root}.{name}", {}).values()) // 2  # noqa: E731
    parts: list[PartCost] = []
    if isinstance(model, SeqParModel):
        parts.append(PartCost("trunk", count_params(model.trunk), macs_of("trunk")))
        for depth, level in enumerate(model.levels):
            params, macs = count_params(level), macs_of(f"levels.{depth}")
            parts.append(PartCost(f"level {depth} ({level.groups} nodes)", params, macs))
            parts.append(PartCost(f"level {depth} per node", params // level.groups, macs // level.groups))
    return Cost(count_params(model), counter.get_total_flops() // 2, tuple(parts))


@dataclass(frozen=True)
class BranchCosts:
    """MACs per image of a model's trunk, and of each level's blocks and heads, measured once.

    Fused branch levels cost the same per kept node (grouped convolutions) and per kept leaf
    (heads), so the MACs of any cutout follow without running it: building a cutout needs no
    forward pass. ``tests/test_crossmodal_classifier.py`` checks this against `measure`.
    """

    trunk_macs: int
    block_macs: tuple[int, ...]  # per level, all groups
    head_macs: tuple[int, ...]  # per level, all leaves
    groups: tuple[int, ...]
    leaves: tuple[int, ...]

    @classmethod
    @torch.no_grad()
    def of(cls, model: SeqParModel) -> BranchCosts:
        size = model.config.image_size
        with FlopCounterMode(display=False) as counter:
            weight = next(model.parameters())
            model(torch.zeros(1, 3, size, size, device=weight.device, dtype=weight.dtype))
        flops = counter.get_flop_counts()
        macs = lambda name: sum(flops.get(f"SeqParModel.{name}", {}).values()) // 2  # noqa: E731
        heads = tuple(macs(f"levels.{d}.head") for d in range(len(model.levels)))
        return cls(macs("trunk"), tuple(macs(f"levels.{d}") - h for d, h in enumerate(heads)), heads,
                   tuple(level.groups for level in model.levels), tuple(len(level.leaf_list) for level in model.levels))

    def cost(self, net: SeqParModel) -> Cost:
        """Params (counted) and MACs per image of ``net``: the model itself or one of its cutouts."""
        macs = self.trunk_macs
        for d, level in enumerate(net.levels):
            macs += self.block_macs[d] * level.groups // self.groups[d]
            if self.leaves[d]:
                macs += self.head_macs[d] * len(level.leaf_list) // self.leaves[d]
        return Cost(count_params(net), macs)



def comparison_table(full: Cost, cut: Cost, full_classes: int, cut_classes: int) -> str:
    """The paper's Table-2 layout: full model vs cutout, with the reduction."""
    rows = [
        ("classes", f"{full_classes}", f"{cut_classes}", ""),
        ("GMACs", f"{full.gmacs:.3f}", f"{cut.gmacs:.3f}", f"{100 * (cut.macs / full.macs - 1):+.2f} %"),
        ("params", f"{full.params:,}", f"{cut.params:,}", f"{100 * (cut.params / full.params - 1):+.2f} %"),
    ]
    lines = ["| | full model | cutout | reduction |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def parts_table(cost: Cost, title: str) -> str:
    lines = [f"| {title} | params | GMACs |", "|---|---:|---:|"]
    lines += [f"| {p.name} | {p.params:,} | {p.macs / 1e9:.4f} |" for p in cost.parts]
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Params and GMACs of a SeqPar model and of a cutout (paper Table 2).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", default="nhl_resnet50", help=f"one of: {', '.join(available_presets())}")
    source.add_argument("--model", help="a saved model directory (or 'default')")
    parser.add_argument("--num-classes", type=int, default=1000, help="classes of the preset model")
    parser.add_argument("--hierarchy", help="YAML/JSON class tree for the preset (default: contiguous groups)")
    parser.add_argument("--classes", default="281-285", help="cutout classes, e.g. '281-285' (label ids)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input size in pixels (default: the saved model's own, 224 for a preset)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.model:
        model = load_seqpar(args.model)
    else:
        tree = Hierarchy.load(args.hierarchy, args.num_classes).tree if args.hierarchy else None
        config = preset(args.preset, num_classes=args.num_classes, hierarchy=tree, image_size=args.image_size or 224)
        with meta_device():  # counting needs shapes only: no memory, no initialisation
            model = SeqParModel(config).to("meta")
    model.eval()
    classes = parse_ids(args.classes, what="--classes")
    side = args.image_size or model.config.image_size
    size = (1, 3, side, side)
    full = measure(model, size)
    cut = measure(model.cutout(classes, share_trunk=True), size)
    return {"model": args.model or args.preset, "classes": classes, "full": full.to_dict(), "cutout": cut.to_dict(),
            "tables": [comparison_table(full, cut, model.config.num_classes, len(classes)),
                       parts_table(full, "full model"), parts_table(cut, "cutout")]}


def _render(result: dict[str, Any], args: argparse.Namespace) -> str:
    if args.json:
        return render_json({k: v for k, v in result.items() if k != "tables"})
    return f"model: {result['model']}  cutout classes: {args.classes}\n\n" + "\n\n".join(result["tables"])


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv, _render)


if __name__ == "__main__":
    exit_process(cli())
