"""YAMNet's log-mel front end as its TFLite export computes it: 16 kHz mono -> 96x64 log-mel patches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from audio.yamnet.quant import int8_linear

MEL_BREAK_HZ, MEL_HIGH_Q = 700.0, 1127.0  # the HTK mel scale of tf.signal.linear_to_mel_weight_matrix


@dataclass(frozen=True)
class LogMelConfig:
    """YAMNet's feature parameters (`yamnet/params.py`): 25 ms Hann frames every 10 ms, a 512-point DFT
    magnitude, 64 mel bands 125-7500 Hz, log(mel + 0.001), 96-frame patches every 48 frames (0.48 s)."""

    sample_rate: int = 16_000
    window_seconds: float = 0.025
    hop_seconds: float = 0.010
    mel_bands: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.001
    patch_frames: int = 96
    patch_hop_frames: int = 48

    @property
    def window_samples(self) -> int:
        return round(self.sample_rate * self.window_seconds)

    @property
    def hop_samples(self) -> int:
        return round(self.sample_rate * self.hop_seconds)

    @property
    def fft_length(self) -> int:
        return 2 ** math.ceil(math.log2(self.window_samples))

    @property
    def patch_samples(self) -> int:
        """Samples one patch covers: (patch_frames - 1) hops plus one window (15,600 at 16 kHz)."""
        return (self.patch_frames - 1) * self.hop_samples + self.window_samples

    @property
    def patch_hop_samples(self) -> int:
        return self.patch_hop_frames * self.hop_samples


def periodic_hann(length: int) -> np.ndarray:
    """The periodic Hann window of YAMNet's TFLite features code, in float32."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(0, 1.0, 1.0 / length))).astype(np.float32)


def rdft_matrices(fft_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts, (bins, fft_length) float32, of the first fft_length // 2 + 1 DFT rows."""
    omega = 2j * np.pi / fft_length
    dft = np.exp(omega * np.outer(np.arange(fft_length // 2 + 1), np.arange(fft_length)))
    return np.real(dft).astype(np.float32), np.imag(dft).astype(np.float32)


def hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    return MEL_HIGH_Q * np.log(1.0 + np.asarray(hertz, dtype=np.float64) / MEL_BREAK_HZ)


def mel_matrix(config: LogMelConfig) -> np.ndarray:
    """(mel_bands, bins) float32 triangular filters of `tf.signal.linear_to_mel_weight_matrix` (HTK mel scale,
    triangles linear in mel, the DC bin left at zero)."""
    bins = config.fft_length // 2 + 1
    bin_mel = hertz_to_mel(np.linspace(0.0, config.sample_rate / 2.0, bins)[1:])[:, None]
    edges = np.linspace(hertz_to_mel(config.mel_min_hz), hertz_to_mel(config.mel_max_hz), config.mel_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    weights = np.maximum(0.0, np.minimum((bin_mel - lower) / (center - lower), (upper - bin_mel) / (upper - center)))
    return np.pad(weights, ((1, 0), (0, 0))).T.astype(np.float32)


def quantize_symmetric(matrix: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """int8 values and scale of `matrix` quantised per tensor and symmetrically, as the TFLite converter does."""
    scale = np.float32(np.abs(matrix).max()) / np.float32(127.0)
    return np.clip(np.round(matrix / scale), -127, 127).astype(np.int8), scale


class LogMelFrontend(nn.Module):
    """Waveforms (batch, samples) at 16 kHz -> log-mel frames (batch, frames, mel_bands), batched.

    Frames of 400 samples every 160 (no padding: a 15,600-sample window gives exactly one 96-frame patch) are
    multiplied by a periodic Hann window, zero-padded on both sides to 512 samples, transformed by a real DFT
    written as a matrix product (the columns that would multiply the padding's zeros are left out), reduced to
    magnitudes, mapped to mel bands and logged with an offset. As in
    the TFLite export, the DFT and mel matrices are int8 (computed here from their formulas and quantised like
    the converter did; `scripts/convert_yamnet.py` checks them against the export) and activations are
    quantised on the fly (`audio.yamnet.quant`).
    """

    def __init__(self, config: LogMelConfig = LogMelConfig()) -> None:
        super().__init__()
        self.config = config
        real, imag = rdft_matrices(config.fft_length)
        dft, dft_scale = quantize_symmetric(np.concatenate([real, imag]))
        left = (config.fft_length - config.window_samples) // 2
        dft = dft[:, left : left + config.window_samples]
        mel, mel_scale = quantize_symmetric(mel_matrix(config))
        self.register_buffer("window", torch.from_numpy(periodic_hann(config.window_samples)), persistent=False)
        self.register_buffer("dft", torch.from_numpy(dft).float(), persistent=False)
        self.register_buffer("dft_scale", torch.tensor(dft_scale), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("mel_scale", torch.tensor(mel_scale), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        config = self.config
        if waveforms.ndim != 2 or waveforms.shape[1] < config.window_samples:
            raise ValueError(
                f"expected waveforms of shape (batch, samples >= {config.window_samples}), got {tuple(waveforms.shape)}"
            )
        frames = waveforms.unfold(1, config.window_samples, config.hop_samples) * self.window
        bins = self.dft.shape[0] // 2
        spectrum = int8_linear(frames, self.dft, self.dft_scale)
        real, imag = spectrum[..., :bins], spectrum[..., bins:]
        magnitude = torch.sqrt(real * real + imag * imag)
        return torch.log(int8_linear(magnitude, self.mel, self.mel_scale) + config.log_offset)
