"""Streaming audio for robots: PCM chunks in, a new guide out whenever the heard cue changes."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from mappings import Guide

TagFn = Callable[[np.ndarray, int], Any]  # (mono float32 waveform, sampling rate) -> a Cue (None: silence)
GuideFn = Callable[[Any], Guide]  # Cue (or None) -> Guide
MAX_CHANNELS = 32  # a chunk with more "channels" than this is taken for a channels-first array and refused


class CueStream:
    """A ring buffer of the last ``window_seconds`` of audio, re-tagged every ``interval_seconds``.

    :meth:`push` takes PCM chunks (1-D mono or ``(samples, channels)``; int16 PCM or float in
    [-1, 1]) and returns a new :class:`Guide` when the cue changed - when the guide's classes or its
    confidence differ from the last emitted guide (score jitter alone does not re-emit) - else
    ``None``. Not thread-safe: one stream per microphone, fed from one thread.
    """

    def __init__(self, tag: TagFn, to_guide: GuideFn, *, sampling_rate: int, window_seconds: float = 2.0,
                 interval_seconds: float = 1.0):
        if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, numbers.Integral) or sampling_rate <= 0:
            raise ValueError(f"sampling_rate must be a positive integer (Hz), got {sampling_rate!r}")
        sampling_rate = int(sampling_rate)
        if not window_seconds > 0 or not interval_seconds > 0:
            raise ValueError(f"window_seconds and interval_seconds must be > 0, got {window_seconds}, {interval_seconds}")
        self.tag, self.to_guide = tag, to_guide
        self.sampling_rate = sampling_rate
        self.window = max(1, round(window_seconds * sampling_rate))
        self.interval = max(1, round(interval_seconds * sampling_rate))
        self._buffer = np.zeros(self.window, np.float32)
        self._filled = 0  # samples in the buffer (up to window)
        self._since_tag = 0
        self.guide: Guide | None = None  # the last emitted guide
        self.cue: Any = None  # the latest cue heard
        self.tag_count = 0

    def push(self, chunk: np.ndarray) -> Guide | None:
        """Append a chunk; tag the buffer when ``interval_seconds`` of new audio arrived."""
        samples = _to_mono_float(chunk)
        if len(samples) >= self.window:
            self._buffer[:] = samples[-self.window:]
        elif len(samples):
            self._buffer = np.roll(self._buffer, -len(samples))
            self._buffer[-len(samples):] = samples
        self._filled = min(self.window, self._filled + len(samples))
        self._since_tag += len(samples)
        if self._since_tag < self.interval:
            return None
        self._since_tag %= self.interval  # keep the schedule: one tag per interval of audio on average
        return self._retag()

    def _retag(self) -> Guide | None:
        self.cue = self.tag(self._buffer[-self._filled:].copy(), self.sampling_rate)
        self.tag_count += 1
        guide = self.to_guide(self.cue)
        if self.guide is not None and (guide.classes, guide.confident) == (self.guide.classes, self.guide.confident):
            return None
        self.guide = guide
        return guide

    def reset(self) -> None:
        """Forget the buffered audio and the current guide."""
        self._buffer[:] = 0
        self._filled = self._since_tag = 0
        self.guide = self.cue = None


def _to_mono_float(chunk: np.ndarray) -> np.ndarray:
    if not isinstance(chunk, np.ndarray):
        raise ValueError(f"a PCM chunk must be a numpy array, got {type(chunk).__name__}")
    if chunk.ndim not in (1, 2):
        raise ValueError(f"a PCM chunk must be 1-D (mono) or (samples, channels), got shape {chunk.shape}")
    if chunk.ndim == 2 and chunk.shape[1] > MAX_CHANNELS:
        raise ValueError(f"a PCM chunk of shape {chunk.shape} has {chunk.shape[1]} channels: expected (samples, "
                         f"channels) with at most {MAX_CHANNELS} channels; transpose a channels-first chunk")
    if chunk.dtype == np.int16:
        samples = chunk.astype(np.float32) / 32768.0
    elif np.issubdtype(chunk.dtype, np.floating):
        samples = chunk.astype(np.float32)
        if not np.isfinite(samples).all() or (samples.size and np.abs(samples).max() > 1.0):
            raise ValueError("a float PCM chunk must hold finite samples in [-1, 1]")
    else:
        raise ValueError(f"a PCM chunk must be int16 or float in [-1, 1], got dtype {chunk.dtype}")
    return samples.mean(axis=1) if samples.ndim == 2 else samples
