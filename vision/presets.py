"""Named SeqPar variants of the paper (PHL small/big/lateSP/1branch, NHL, N3HL, N4HL).

The paper's exact branch widths were lost from its tables; these widths were chosen so the
models land near its published totals (see README, "Presets"). Every value can be overridden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import SeqParConfig
from .hierarchy import Hierarchy, Tree

# variant -> split point, per-level (channels, hidden, depth, stride), tree (extra levels above the leaves)
# ResNet stage names: the split point is layer2 (early) or layer3 (late).
_RESNET_VARIANTS: dict[str, dict[str, Any]] = {
    "phl_small": dict(split_point="layer2", levels=[(256, 64, 2, 2)]),
    "phl_big": dict(split_point="layer2", levels=[(512, 128, 3, 2)]),
    "phl_latesp": dict(split_point="layer3", levels=[(512, 128, 2, 2)]),
    "phl_1branch": dict(split_point="layer2", levels=[(1024, 256, 4, 2), (1024, None, 0, 1)], tree="one_branch"),
    "nhl": dict(split_point="layer3", levels=[(512, 128, 1, 2), (96, 24, 1, 1)], tree=1),
    "n3hl": dict(split_point="layer3", levels=[(512, 128, 1, 2), (256, 64, 1, 1), (128, 32, 1, 1)], tree=2),
    "n4hl": dict(split_point="layer3",
                 levels=[(512, 128, 1, 2), (256, 64, 1, 1), (192, 48, 1, 1), (128, 32, 1, 1)], tree=3),
}
# ConvNeXtV2-tiny NHL with a (paper Study 4) frozen pretrained trunk: superclasses, then leaves.
_CONVNEXT_NHL = dict(backbone="convnextv2_tiny", split_point="stages.2",
                     levels=[(128, 256, 1, 2), (24, 48, 1, 1)], tree=1, freeze_trunk=True)


def default_tree(num_classes: int, extra_levels: int) -> Tree:
    """Groups of consecutive classes, ``extra_levels`` levels above the leaves, ~equal fan-out."""
    fanout = max(2, round(num_classes ** (1.0 / (extra_levels + 1))))
    return Hierarchy.balanced(num_classes, [fanout] * extra_levels).tree


def _one_branch_tree(num_classes: int) -> Tree:
    return {"name": "root", "children": [{"name": "all", "children": list(range(num_classes))}]}


def _make(spec: dict[str, Any], backbone: str) -> Callable[..., SeqParConfig]:
    def build(*, num_classes: int, hierarchy: Tree | None = None, **overrides: Any) -> SeqParConfig:
        tree_kind = spec.get("tree", 0)
        if tree_kind == "one_branch":
            hierarchy = _one_branch_tree(num_classes)
        elif hierarchy is None and tree_kind:
            hierarchy = default_tree(num_classes, tree_kind)
        levels = spec["levels"]
        values: dict[str, Any] = dict(
            backbone=spec.get("backbone", backbone), split_point=spec["split_point"], num_classes=num_classes,
            topology="nhl" if tree_kind not in (0, "one_branch") else "phl", hierarchy=hierarchy,
            branch_channels=tuple(c for c, _, _, _ in levels), branch_hidden=tuple(h for _, h, _, _ in levels),
            branch_depth=tuple(d for _, _, d, _ in levels), branch_stride=tuple(s for _, _, _, s in levels),
            freeze_trunk=spec.get("freeze_trunk", False),
        )
        values.update(overrides)
        return SeqParConfig(**values)

    return build


PRESETS: dict[str, Callable[..., SeqParConfig]] = {
    f"{variant}_{backbone}": _make(spec, backbone)
    for backbone in ("resnet50", "resnet152")
    for variant, spec in _RESNET_VARIANTS.items()
}
PRESETS["nhl_convnextv2_tiny"] = _make(_CONVNEXT_NHL, "convnextv2_tiny")


def available_presets() -> list[str]:
    return sorted(PRESETS)


def preset(name: str, *, num_classes: int, hierarchy: Tree | None = None, **overrides: Any) -> SeqParConfig:
    """The config of a named variant, e.g. ``preset("nhl_resnet50", num_classes=100)``.

    Without ``hierarchy``, nested variants group consecutive class ids (see :func:`default_tree`);
    pass a semantic tree (e.g. WordNet's) for real use. ``overrides`` replace config fields.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(available_presets())}")
    return PRESETS[name](num_classes=num_classes, hierarchy=hierarchy, **overrides)
