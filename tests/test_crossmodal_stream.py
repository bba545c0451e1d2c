"""CueStream: the ring buffer keeps the latest audio, re-tags on schedule and emits guides only on change."""

from __future__ import annotations

import numpy as np
import pytest

from crossmodal import Guide
from crossmodal.stream import CueStream

RATE = 100  # samples per second: small numbers keep the arithmetic readable


class Recorder:
    """Tags a window by its loudness (loud -> class 1, quiet -> class 2) and records what it was given."""

    def __init__(self):
        self.windows: list[np.ndarray] = []

    def tag(self, wave: np.ndarray, rate: int) -> str:
        assert rate == RATE
        self.windows.append(wave)
        return "loud" if np.abs(wave).mean() > 0.25 else "quiet"

    @staticmethod
    def to_guide(cue: str) -> Guide:
        return Guide.for_classes([1 if cue == "loud" else 2], gain=2.0)


def test_retags_every_interval_on_the_latest_window():
    rec = Recorder()
    stream = CueStream(rec.tag, rec.to_guide, sampling_rate=RATE, window_seconds=2.0, interval_seconds=1.0)
    ramp = (np.arange(450) / 2000).astype(np.float32)  # 4.5 s of distinct, quiet samples
    emitted = [stream.push(ramp[i:i + 30]) for i in range(0, 450, 30)]
    assert stream.tag_count == 4  # at 1.2, 2.1, 3.0 and 4.2 s: one tag per second of audio on average
    assert [len(w) for w in rec.windows] == [120, 200, 200, 200]
    np.testing.assert_array_equal(rec.windows[0], ramp[:120])
    np.testing.assert_array_equal(rec.windows[-1], ramp[220:420])
    assert sum(g is not None for g in emitted) == 1  # quiet all along: one guide, no repeats
    assert stream.guide.classes == (2,)


def test_emits_a_new_guide_when_the_cue_changes():
    rec = Recorder()
    stream = CueStream(rec.tag, rec.to_guide, sampling_rate=RATE, window_seconds=1.0, interval_seconds=0.5)
    quiet, loud = np.full(50, 0.1, np.float32), np.full(50, 0.9, np.float32)
    out = [stream.push(c) for c in (quiet, quiet, loud, loud, loud, quiet, quiet)]
    assert [g.classes if g is not None else None for g in out] == [(2,), None, (1,), None, None, None, (2,)]


def test_pcm_formats_and_long_chunks():
    rec = Recorder()
    stream = CueStream(rec.tag, rec.to_guide, sampling_rate=RATE, window_seconds=1.0, interval_seconds=1.0)
    stereo = np.stack([np.full(30, 16384, np.int16), np.full(30, -16384, np.int16)], axis=1)
    stream.push(stereo)
    stream.push(np.full(80, 8192, np.int16))  # 110 samples in: tag
    np.testing.assert_allclose(rec.windows[0], np.r_[np.zeros(20), np.full(80, 0.25)].astype(np.float32))
    stream.push(np.linspace(-1, 1, 250, dtype=np.float32))  # longer than the window: keep its end
    np.testing.assert_array_equal(rec.windows[1], np.linspace(-1, 1, 250, dtype=np.float32)[-100:])
    stream.reset()
    assert stream.guide is None and stream.push(np.zeros(10, np.float32)) is None


@pytest.mark.parametrize(
    "chunk, message",
    [
        ([0.1, 0.2], "must be a numpy array, got list"),
        (np.zeros((2, 2, 2), np.float32), r"1-D \(mono\) or \(samples, channels\)"),
        (np.zeros(4, np.int32), "int16 or float in \\[-1, 1\\], got dtype int32"),
        (np.array([0.5, 1.5], np.float32), "finite samples in \\[-1, 1\\]"),
        (np.array([np.nan], np.float32), "finite samples"),
    ],
)
def test_bad_chunks_raise(chunk, message):
    rec = Recorder()
    stream = CueStream(rec.tag, rec.to_guide, sampling_rate=RATE)
    with pytest.raises(ValueError, match=message):
        stream.push(chunk)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="sampling_rate must be a positive integer"):
        CueStream(str, Recorder.to_guide, sampling_rate=0)
    with pytest.raises(ValueError, match="must be > 0"):
        CueStream(str, Recorder.to_guide, sampling_rate=RATE, interval_seconds=0)


def test_channels_first_chunks_are_refused_not_misread():
    rec = Recorder()
    stream = CueStream(rec.tag, rec.to_guide, sampling_rate=RATE)
    with pytest.raises(ValueError, match=r"shape \(2, 512\) has 512 channels: expected \(samples, channels\)"):
        stream.push(np.zeros((2, 512), np.float32))
    stream.push(np.zeros((512, 2), np.float32))  # (samples, channels) is fine
    assert stream._filled == stream.window  # 512 samples filled the 200-sample window
