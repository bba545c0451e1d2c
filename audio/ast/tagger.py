"""The AST backend: Audio Spectrogram Transformer checkpoints (transformers) from a directory or the Hugging Face hub."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub.constants
import numpy as np
import torch
from transformers import ASTFeatureExtractor, ASTForAudioClassification, AutoConfig
from transformers.utils import is_speech_available

from audio.ast.fast import forward_trimmed, quantize_linear_layers, trimmed_num_frames
from audio.backends import AudioTagger
from audio.labels import audioset_mids

AST_MODEL_TYPE = "audio-spectrogram-transformer"
FRAME_SECONDS = 0.025  # Kaldi fbank defaults used by ASTFeatureExtractor: 25 ms frames every 10 ms
FRAME_SHIFT_SECONDS = 0.010


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set now (environment) or was set when huggingface_hub was imported."""
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


class HubUnreachableError(OSError):
    """The Hugging Face Hub cannot be reached (raised before transformers would retry for half a minute)."""


def hub_connection_problem(timeout: float = 3.0) -> str | None:
    """None if a TCP connection to the Hub endpoint opens within `timeout` s (or a proxy is configured), else why not."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # the proxy decides; a direct probe would say nothing
    endpoint = urlparse(huggingface_hub.constants.ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        return f"cannot reach {host}:{port}: {error}"
    return None


def not_cached_message(model_id: str, reason: str) -> str:
    return (
        f"AST model {model_id!r} is not cached locally and cannot be downloaded ({reason}). "
        "Download it once where there is network access, or pass a local directory instead: "
        "AudioTagger.from_pretrained('/path/to/ast-dir'), where the directory holds config.json, "
        "model.safetensors and preprocessor_config.json (written by model.save_pretrained(dir) and "
        "feature_extractor.save_pretrained(dir))."
    )


class ASTTagger(AudioTagger):
    """Tags sounds with the labels of an AST audio-classification checkpoint (windows of `max_length` frames,
    no overlap by default, max pooling, silence kept: the behaviour before backends existed).

    `fast=True` runs AST on only the frames a clip shorter than the model's window has (sliced time position
    embeddings) instead of padding it to `max_length` frames; `quantize=True` uses int8 dynamic quantization of
    the Linear layers. Both change scores slightly; the default (exact) path matches transformers' own pipeline.
    """

    def __init__(
        self,
        model: ASTForAudioClassification,
        feature_extractor: ASTFeatureExtractor,
        *,
        fast: bool = False,
        quantize: bool = False,
    ) -> None:
        if not is_speech_available():
            raise ImportError(
                "ASTTagger needs torchaudio (a declared dependency of this project): without it transformers' "
                "ASTFeatureExtractor silently switches to a slower numpy fbank with slightly different features"
            )
        config = model.config
        if getattr(config, "model_type", None) != AST_MODEL_TYPE:
            raise ValueError(f"expected an AST model ({AST_MODEL_TYPE!r}), got model_type {config.model_type!r}")
        if (feature_extractor.num_mel_bins, feature_extractor.max_length) != (config.num_mel_bins, config.max_length):
            raise ValueError(
                f"feature extractor ({feature_extractor.num_mel_bins} mel bins, {feature_extractor.max_length} frames) "
                f"does not match the model ({config.num_mel_bins} mel bins, {config.max_length} frames)"
            )
        self.model = quantize_linear_layers(model.eval()) if quantize else model.eval()
        self.feature_extractor = feature_extractor
        self.fast = fast
        self.quantized = quantize
        self.labels: tuple[str, ...] = tuple(config.id2label[i] for i in range(config.num_labels))
        self.mids = audioset_mids(self.labels)
        self.multi_label = config.problem_type != "single_label_classification"
        rate = feature_extractor.sampling_rate
        self.frame_samples = int(FRAME_SECONDS * rate)
        self.frame_shift_samples = int(FRAME_SHIFT_SECONDS * rate)
        self.window_samples = (config.max_length - 1) * self.frame_shift_samples + self.frame_samples

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        fast: bool = False,
        quantize: bool = False,
        cache_dir: str | os.PathLike | None = None,
    ) -> "ASTTagger":
        """Load an AST checkpoint from a local directory or a Hub id (cache only when HF_HUB_OFFLINE=1).

        Raises FileNotFoundError, without retrying, for a missing directory, or for a Hub id that is not cached
        while HF_HUB_OFFLINE is set or the Hub is unreachable (one connection probe, 3 s at most).
        """
        local = Path(name_or_path).expanduser()
        is_path = isinstance(name_or_path, os.PathLike) or str(name_or_path).startswith(("/", ".", "~"))
        is_local = local.is_dir()
        if is_local:
            source, local_only = str(local), True
        elif is_path or local.exists():
            raise FileNotFoundError(f"AST model directory not found: {name_or_path}")
        else:
            source, local_only = str(name_or_path), hub_offline()
        try:
            config = cls._load(AutoConfig, source, cache_dir, local_only)
            if config.model_type != AST_MODEL_TYPE:
                raise ValueError(f"{source}: expected an AST checkpoint ({AST_MODEL_TYPE!r}), got {config.model_type!r}")
            model = cls._load(ASTForAudioClassification, source, cache_dir, local_only, config=config)
            extractor = cls._load(ASTFeatureExtractor, source, cache_dir, local_only)
        except OSError as error:
            if is_local:
                raise FileNotFoundError(f"{source}: not a complete AST checkpoint directory ({error})") from error
            reason = "HF_HUB_OFFLINE=1" if local_only else f"{type(error).__name__}: {error}"
            raise FileNotFoundError(not_cached_message(source, reason)) from error
        return cls(model, extractor, fast=fast, quantize=quantize)

    @staticmethod
    def _load(loader, source: str, cache_dir, local_only: bool, **kwargs):
        """`loader.from_pretrained` from the local cache first (a cached model never touches the network), then
        from the Hub unless `local_only`, after a one-shot reachability probe instead of transformers' retries."""
        try:
            return loader.from_pretrained(source, cache_dir=cache_dir, local_files_only=True, **kwargs)
        except OSError:
            if local_only:
                raise
            if problem := hub_connection_problem():
                raise HubUnreachableError(problem) from None
            return loader.from_pretrained(source, cache_dir=cache_dir, **kwargs)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def _num_frames(self, samples: int) -> int:
        if samples < self.frame_samples:
            raise ValueError(
                f"audio too short: {samples} samples at {self.sampling_rate} Hz; expected at least "
                f"{self.frame_samples} samples ({FRAME_SECONDS * 1000:.0f} ms, one analysis frame)"
            )
        return (samples - self.frame_samples) // self.frame_shift_samples + 1

    @torch.inference_mode()
    def window_scores(self, windows: list[np.ndarray]) -> np.ndarray:
        """Scores (windows, labels) for a batch of mono windows at the model's rate, each at most one window long."""
        frames = max(self._num_frames(len(window)) for window in windows)
        features = self.feature_extractor(windows, sampling_rate=self.sampling_rate, return_tensors="pt")
        input_values = features["input_values"]
        if self.fast:
            logits = forward_trimmed(self.model, input_values[:, : trimmed_num_frames(frames, self.model.config)])
        else:
            logits = self.model(input_values=input_values).logits
        scores = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return scores.float().numpy()
