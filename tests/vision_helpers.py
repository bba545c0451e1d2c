"""Tiny SeqPar models for fast CPU tests."""

from __future__ import annotations

import random
from typing import Any

import torch

from vision import SeqParConfig, SeqParModel
from vision.nn.trunk import Trunk

TREE = {
    "name": "root",
    "children": [
        {"name": "a", "children": [0, 1, 2]},
        {"name": "b", "children": [3, {"name": "c", "children": [4, 5]}]},
        6,
    ],
}
SPLITS = {"resnet18": "layer1", "convnextv2_atto": "stages.0", "tf_efficientnet_lite0": "blocks.2"}
_TRUNKS: dict[str, Trunk] = {}


def shared_trunk(backbone: str = "resnet18") -> Trunk:
    """One trunk per backbone for the whole test session (building timm models costs time)."""
    if backbone not in _TRUNKS:
        _TRUNKS[backbone] = Trunk(backbone, SPLITS[backbone]).eval()
    return _TRUNKS[backbone]


def tiny_config(backbone: str = "resnet18", tree: dict | None = TREE, num_classes: int = 7, **kw: Any) -> SeqParConfig:
    depth = _depth(tree) if tree else 1
    values = dict(
        backbone=backbone, split_point=SPLITS[backbone], topology="nhl" if tree else "phl", hierarchy=tree,
        num_classes=num_classes, branch_channels=(16, 8, 8, 8)[:depth], branch_depth=(1, 2, 1, 1)[:depth],
        branch_stride=(2, 1, 1, 1)[:depth],
    )
    values.update(kw)
    return SeqParConfig(**values)


def tiny_model(backbone: str = "resnet18", seed: int = 0, **kw: Any) -> SeqParModel:
    """A randomly initialised tiny model in eval mode, with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = SeqParModel(tiny_config(backbone, **kw), trunk=_copy_trunk(backbone))
    randomise_norms(model)
    return model.eval()


def _copy_trunk(backbone: str) -> Trunk:
    import copy

    return copy.deepcopy(shared_trunk(backbone))


def randomise_norms(model: torch.nn.Module) -> None:
    """Give every norm layer non-identity statistics and affine weights, and every branch convolution's bias
    non-zero values (so identity and zero init hide nothing)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
        for name, p in model.named_parameters():
            if name.endswith(("grn.weight", "grn.bias")) or (name.startswith("levels.") and name.endswith(".bias")):
                p.normal_(0, 0.2)
            elif name.startswith("levels.") and "norm.weight" in name:  # ConvNeXt branches' LayerNorms
                p.normal_(1, 0.2)


SYNTHETIC_TREE = {"name": "root", "children": [{"name": "lower", "children": [0, 1, 2, 3, 4]},
                                               {"name": "upper", "children": [5, 6, 7, 8, 9]}]}


def synthetic_model(seed: int = 0) -> SeqParModel:
    """A tiny two-level NHL model for the 10 classes of :mod:`vision.data.synthetic` (32 px inputs)."""
    from vision import build_seqpar
    from vision.data.synthetic import class_folder

    torch.manual_seed(seed)
    cfg = SeqParConfig(backbone="resnet18", split_point="layer1", topology="nhl", hierarchy=SYNTHETIC_TREE,
                       num_classes=10, branch_channels=(8, 8), branch_depth=(1, 1), branch_stride=(2, 1),
                       class_names=tuple(class_folder(c) for c in range(10)), image_size=32,
                       preprocessing={"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "crop_pct": 1.0})
    return build_seqpar(cfg)


def random_tree(num_classes: int, seed: int) -> dict:
    """A random nesting of classes ``0..num_classes-1`` up to 3 levels deep."""
    rng = random.Random(seed)
    counter = iter(range(10_000))

    def group(items: list, depth: int) -> list:
        if depth == 0 or len(items) <= 1:
            return items
        rng.shuffle(items)
        out, i = [], 0
        while i < len(items):
            size = rng.randint(1, max(1, len(items) // 2))
            chunk = items[i : i + size]
            i += size
            if len(chunk) > 1 or rng.random() < 0.3:
                out.append({"name": f"n{next(counter)}", "children": group(chunk, depth - 1)})
            else:
                out.extend(chunk)
        return out

    return {"name": "root", "children": group(list(range(num_classes)), 2)}


def _depth(tree: Any) -> int:
    if isinstance(tree, int):
        return 0
    return 1 + max(_depth(c) for c in tree["children"])
