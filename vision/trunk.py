"""The shared trunk: a timm backbone truncated at a named stage (the split-point)."""

from __future__ import annotations

import torch
from torch import nn

import timm

FAMILY_BLOCK = {"resnet": "bottleneck", "convnext": "convnext", "efficientnet": "mbconv"}


def backbone_family(backbone: str) -> str:
    """``resnet``, ``convnext`` or ``efficientnet`` for the supported timm backbones."""
    if backbone.startswith("resnet"):
        return "resnet"
    if backbone.startswith("convnextv2") or backbone.startswith("convnext"):
        return "convnext"
    if backbone.startswith("tf_efficientnet_lite") or backbone.startswith("efficientnet_lite"):
        return "efficientnet"
    raise ValueError(
        f"unsupported backbone {backbone!r}; expected a timm ResNet (resnet18..resnet200), "
        "ConvNeXtV2 (convnextv2_atto..convnextv2_base) or EfficientNet-Lite (tf_efficientnet_lite0..4)"
    )


def stage_names(body: nn.Module, family: str) -> list[str]:
    """The addressable stages in ``forward_intermediates`` index order."""
    if family == "efficientnet":
        return ["bn1"] + [f"blocks.{i}" for i in range(len(body.blocks))]
    return [info["module"] for info in body.feature_info]


class Trunk(nn.Module):
    """The backbone up to and including ``split_point``; later stages, norm and head are pruned.

    ``body`` is the timm model itself, so its state dict uses timm's parameter names and
    pretrained timm weights load into it by name.
    """

    def __init__(self, backbone: str, split_point: str):
        super().__init__()
        self.family = backbone_family(backbone)
        if backbone not in timm.list_models():
            raise ValueError(f"timm has no model named {backbone!r}")
        self.body = timm.create_model(backbone, pretrained=False)
        names = stage_names(self.body, self.family)
        if split_point not in names:
            raise ValueError(f"split_point {split_point!r} is not a stage of {backbone}; expected one of {names}")
        self.index = names.index(split_point)
        self._extra = {"extra_blocks": True} if self.family == "efficientnet" else {}
        self.body.prune_intermediate_layers(indices=[self.index], prune_norm=True, prune_head=True, **self._extra)
        with torch.no_grad():
            probe = torch.zeros(1, 3, 64, 64, device=next(self.body.parameters()).device)
            self.out_channels = self.body.forward_intermediates(
                probe, indices=[self.index], intermediates_only=True, stop_early=True, **self._extra)[0].shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_intermediates(
            x, indices=[self.index], intermediates_only=True, stop_early=True, **self._extra
        )[0]
