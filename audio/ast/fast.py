"""Opt-in fast paths for AST on CPU: run only the frames a short clip has, and int8 dynamic quantization."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers import ASTConfig, ASTForAudioClassification


def trimmed_num_frames(num_frames: int, config: ASTConfig) -> int:
    """The fewest input frames >= `num_frames` that the patch grid covers exactly (at most `config.max_length`).

    Patches are `patch_size` frames wide and start every `time_stride` frames, so the trimmed input keeps every
    real frame; the few frames past the clip's end stay padding, as in the exact path.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    length = max(num_frames, config.patch_size)
    remainder = (length - config.patch_size) % config.time_stride
    if remainder:
        length += config.time_stride - remainder
    return min(length, config.max_length)


@torch.inference_mode()
def forward_trimmed(model: ASTForAudioClassification, input_values: torch.Tensor) -> torch.Tensor:
    """Logits of `model` for `input_values` of shape (batch, frames, mel bins) with frames <= config.max_length.

    The time position embeddings are sliced to the frames present, as the original AST code does for inputs
    shorter than the pretraining length. With frames == config.max_length this is the model's own forward pass.
    """
    config = model.config
    frames = input_values.shape[1]
    if not config.patch_size <= frames <= config.max_length:
        raise ValueError(f"input has {frames} frames; expected {config.patch_size}..{config.max_length}")
    ast = model.audio_spectrogram_transformer
    embeddings = ast.embeddings
    freq_patches, time_patches = embeddings.get_shape(config)
    kept_time_patches = (frames - config.patch_size) // config.time_stride + 1
    position = embeddings.position_embeddings
    patch_position = position[:, 2:].reshape(1, freq_patches, time_patches, -1)[:, :, :kept_time_patches]
    position = torch.cat([position[:, :2], patch_position.reshape(1, freq_patches * kept_time_patches, -1)], dim=1)

    batch = input_values.shape[0]
    tokens = torch.cat(
        [
            embeddings.cls_token.expand(batch, -1, -1),
            embeddings.distillation_token.expand(batch, -1, -1),
            embeddings.patch_embeddings(input_values),
        ],
        dim=1,
    )
    hidden = ast.encoder(embeddings.dropout(tokens + position)).last_hidden_state
    hidden = ast.layernorm(hidden)
    return model.classifier((hidden[:, 0] + hidden[:, 1]) / 2)


def quantize_linear_layers(model: nn.Module) -> nn.Module:
    """A copy of `model` whose nn.Linear layers use dynamic int8 quantization (weights int8, activations per batch).

    Uses torch.ao.quantization.quantize_dynamic, which torch 2.9 marks deprecated (removal planned for 2.10);
    the project pins torch 2.9.1. The original model is left untouched.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)
