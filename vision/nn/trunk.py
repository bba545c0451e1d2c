"""The shared trunk: a backbone truncated at a named stage (the split-point), and the backbone families.

A backbone family says which timm models it covers (name prefixes), which branch block type fits it, and
either how its timm model's stages are named and what ``forward_intermediates`` needs, or how to build the
truncated body natively (``create``, without importing timm: see ``vision.nn.lite``). A new family is one
:func:`register_backbone_family` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .convnext import ConvNeXtInference
from .lite import EfficientNetLite

# a faster forward of a pruned timm body up to its split point, for when no gradient can reach the trunk: the same
# function up to float rounding, computed from the body's current parameters
TrunkInference = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BackboneFamily:
    """A family of timm backbones that a SeqPar trunk can be cut from."""

    name: str
    prefixes: tuple[str, ...]  # timm model names starting with one of these belong to the family
    block: str  # the branch block type that continues the backbone's own blocks
    description: str  # for error messages, e.g. "ResNet (resnet18..resnet200)"
    stage_names: Callable[[nn.Module], list[str]] = lambda body: [info["module"] for info in body.feature_info]
    intermediates_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # builds the body natively, cut at the split point: ``create(backbone, split_point)`` has timm's parameter
    # names, ``out_channels`` and a forward that returns the split point's features; None: the pruned timm model
    create: Callable[[str, str], nn.Module] | None = None
    # ``inference(body, index)``: a faster forward of the pruned timm body cut at ``forward_intermediates`` index
    # ``index`` (None where it does not cover that body); None: timm's forward only
    inference: Callable[[nn.Module, int], TrunkInference | None] | None = None

    def matches(self, backbone: str) -> bool:
        return backbone.startswith(self.prefixes)


_FAMILIES: dict[str, BackboneFamily] = {}


def register_backbone_family(family: BackboneFamily) -> BackboneFamily:
    """Make the timm models of ``family`` usable as SeqPar trunks."""
    if family.name in _FAMILIES:
        raise ValueError(f"backbone family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def backbone_family(backbone: str) -> BackboneFamily:
    """The registered family of a timm model name; ValueError naming the supported families otherwise."""
    for family in _FAMILIES.values():
        if family.matches(backbone):
            return family
    supported = ", ".join(f.description for f in _FAMILIES.values())
    raise ValueError(f"unsupported backbone {backbone!r}; expected a timm {supported}")


register_backbone_family(BackboneFamily("resnet", ("resnet",), "bottleneck", "ResNet (resnet18..resnet200)"))
register_backbone_family(BackboneFamily("convnext", ("convnextv2", "convnext"), "convnext",
                                        "ConvNeXtV2 (convnextv2_atto..convnextv2_base)",
                                        inference=ConvNeXtInference.for_body))
register_backbone_family(BackboneFamily(
    "tf_efficientnet_lite", ("tf_efficientnet_lite",), "mbconv", "EfficientNet-Lite (tf_efficientnet_lite0..4)",
    create=EfficientNetLite,
))
register_backbone_family(BackboneFamily(
    "efficientnet_lite", ("efficientnet_lite",), "mbconv", "EfficientNet-Lite, PyTorch padding (efficientnet_lite0..4)",
    stage_names=lambda body: ["bn1"] + [f"blocks.{i}" for i in range(len(body.blocks))],
    intermediates_kwargs={"extra_blocks": True},
))


class Trunk(nn.Module):
    """The backbone up to and including ``split_point``; later stages, norm and head are pruned.

    ``body`` is the timm model itself or the family's native build (``BackboneFamily.create``); either way its
    state dict uses timm's parameter names, so pretrained timm weights load into it by name. A timm body runs
    its family's faster ``inference`` path where it has one and no gradient can reach the trunk: in eval mode,
    outside an ONNX trace and autocast, with autograd off or neither the trunk's parameters nor the images
    requiring grad (a frozen trunk in training).
    """

    def __init__(self, backbone: str, split_point: str):
        super().__init__()
        self.family = backbone_family(backbone)
        self.index: int | None = None  # the split point's forward_intermediates index, for a timm body
        self.inference: TrunkInference | None = None
        if self.family.create is not None:
            self.body = self.family.create(backbone, split_point)
            self.out_channels: int = self.body.out_channels
        else:
            self.body, self.index = _pruned_timm_model(self.family, backbone, split_point)
            if self.family.inference is not None:
                self.inference = self.family.inference(self.body, self.index)
            with torch.no_grad():
                probe = torch.zeros(1, 3, 64, 64, device=next(self.body.parameters()).device)
                self.out_channels = self(probe).shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.index is None:
            return self.body(x)
        if self.inference is not None and self._gradient_free(x):
            return self.inference(x)
        return self.body.forward_intermediates(
            x, indices=[self.index], intermediates_only=True, stop_early=True, **self.family.intermediates_kwargs
        )[0]

    def _gradient_free(self, x: torch.Tensor) -> bool:
        """Whether this forward can take the inference path: eval mode, not traced, no autocast (it would mix
        dtypes inside the path), no gradient to compute."""
        device = x.device.type
        if self.training or torch.jit.is_tracing() or (
                torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)):
            return False
        if not torch.is_grad_enabled():
            return True
        return not x.requires_grad and not any(p.requires_grad for p in self.body.parameters())


def _pruned_timm_model(family: BackboneFamily, backbone: str, split_point: str) -> tuple[nn.Module, int]:
    """timm's ``backbone`` pruned after ``split_point``, and the split point's ``forward_intermediates`` index."""
    import timm  # only here: importing timm costs seconds of a cold start

    if not timm.is_model(backbone):
        raise ValueError(f"timm has no model named {backbone!r}")
    body = timm.create_model(backbone, pretrained=False)
    names = family.stage_names(body)
    if split_point not in names:
        raise ValueError(f"split_point {split_point!r} is not a stage of {backbone}; expected one of {names}")
    index = names.index(split_point)
    body.prune_intermediate_layers(indices=[index], prune_norm=True, prune_head=True, **family.intermediates_kwargs)
    return body, index
