"""Trunk-weight sources: installed packages that a frozen trunk's weights load from.

A model with ``config.pretrained_trunk = name`` saves only the trunk tensors that differ from the
source and loads the rest from it. A new source is one :func:`register_trunk_weights` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .lite import LITE_PACKAGES, pretrained_lite_state_dict, timm_name


@dataclass(frozen=True)
class TrunkWeightSource:
    """Where the weights of a frozen trunk come from."""

    name: str
    backbone: str  # the timm model the weights belong to
    load: Callable[[], dict[str, torch.Tensor]]  # the whole timm model's state dict (timm names)
    requirement: str  # the package that carries them, for messages


_SOURCES: dict[str, TrunkWeightSource] = {}


def register_trunk_weights(source: TrunkWeightSource) -> TrunkWeightSource:
    """Make ``source.name`` usable as ``SeqParConfig.pretrained_trunk``."""
    if source.name in _SOURCES:
        raise ValueError(f"trunk-weight source {source.name!r} is already registered")
    _SOURCES[source.name] = source
    return source


def trunk_weight_sources() -> tuple[str, ...]:
    return tuple(_SOURCES)


def trunk_weight_source(name: str, backbone: str) -> TrunkWeightSource:
    """The source named ``name``, checked to fit ``backbone``; ValueError otherwise."""
    if name not in _SOURCES:
        raise ValueError(f"unknown pretrained_trunk {name!r}; registered sources: {trunk_weight_sources()}")
    source = _SOURCES[name]
    if source.backbone != backbone:
        raise ValueError(f"pretrained_trunk {name!r} holds {source.backbone} weights, not {backbone!r}")
    return source


for _variant, (_module, _file) in LITE_PACKAGES.items():
    register_trunk_weights(TrunkWeightSource(
        _variant, timm_name(_variant), lambda v=_variant: pretrained_lite_state_dict(v),
        f"{_module.replace('_', '-')}==0.1.0",
    ))
