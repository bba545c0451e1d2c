"""Sliding windows over a stream of sample blocks, holding at most about one window plus one block in memory."""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


def iter_windows(blocks: Iterable[np.ndarray], window: int, hop: int) -> Iterator[np.ndarray]:
    """Yield windows of `window` samples starting every `hop` samples, from consecutive 1-D sample blocks.

    A stream shorter than one window yields itself once. Otherwise windows start at 0, hop, 2*hop, ... and, if the
    stream's end is not covered yet, one last window is aligned to the end, so every window is full length.
    """
    if window < 1 or not 1 <= hop <= window:
        raise ValueError(f"expected window >= 1 and 1 <= hop <= window, got window={window}, hop={hop}")
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # absolute index of buffer[0]
    next_start = 0
    emitted_end = 0  # absolute end of the last window yielded
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        end = buffer_start + len(buffer)
        while next_start + window <= end:
            offset = next_start - buffer_start
            yield buffer[offset : offset + window].copy()
            emitted_end = next_start + window
            next_start += hop
        keep_from = min(next_start, end - window)  # keep enough to align a final window to the end
        if keep_from > buffer_start:
            buffer = buffer[keep_from - buffer_start :]
            buffer_start = keep_from
    end = buffer_start + len(buffer)
    if emitted_end == 0 and end > 0:
        yield buffer.copy()
    elif emitted_end < end:
        yield buffer[len(buffer) - window :].copy()


def trim_silence(blocks: Iterable[np.ndarray], peak: float, max_held: int) -> Iterator[np.ndarray]:
    """Yield the stream of 1-D blocks without its leading and trailing samples whose magnitude is <= `peak`.

    Quiet samples after the first loud one are held back until the next loud sample (then passed on unchanged)
    or the end of the stream (then dropped). A quiet run that grows past `max_held` samples is passed on whole,
    so memory stays bounded and only a trailing run of at most `max_held` samples is cut.
    """
    started, passing = False, False
    held: list[np.ndarray] = []
    held_samples = 0
    for block in blocks:
        loud = np.flatnonzero(np.abs(block) > peak)
        if not started:
            if not len(loud):
                continue
            block, loud, started = block[loud[0] :], loud - loud[0], True
        if len(loud):
            yield from held
            held, held_samples, passing = [], 0, False
            yield block[: loud[-1] + 1]
            block = block[loud[-1] + 1 :]
        if passing:
            yield block
        elif len(block):
            held.append(block)
            held_samples += len(block)
            if held_samples > max_held:
                yield from held
                held, held_samples, passing = [], 0, True


POOLINGS = ("max", "mean")
# Digital silence: every sample at most one step of 16-bit PCM (-90 dBFS), i.e. zeros plus dither or resampling
# residue. Leading and trailing runs of it are cut before windowing, and windows made of it are dropped.
SILENCE_PEAK = 2.0**-15
MAX_HELD_SILENCE_SECONDS = 60.0  # a longer quiet run inside a stream is passed on (bounded memory)


def sound_windows(blocks: Iterable[np.ndarray], window: int, hop: int, *, drop_silence: bool,
                  sampling_rate: int) -> Iterator[np.ndarray]:
    """`iter_windows` over the blocks; with `drop_silence`, leading and trailing digital silence (`SILENCE_PEAK`)
    is cut first (`trim_silence`) and windows that are silent throughout are dropped. What every tagger pools."""
    if not drop_silence:
        return iter_windows(blocks, window, hop)
    held = round(MAX_HELD_SILENCE_SECONDS * sampling_rate)
    windows = iter_windows(trim_silence(blocks, SILENCE_PEAK, held), window, hop)
    return (w for w in windows if np.abs(w).max() > SILENCE_PEAK)


def pool_scores(batches: Iterable[np.ndarray], pooling: str) -> np.ndarray | None:
    """Pool window scores given batch by batch ((windows, labels) arrays) by "max" or by "mean" (summed in
    float64, returned as float32); None when no window came."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    pooled, count = None, 0
    for batch_scores in batches:
        reduced = batch_scores.max(axis=0) if pooling == "max" else batch_scores.sum(axis=0, dtype=np.float64)
        if pooled is None:
            pooled = reduced
        else:
            pooled = np.maximum(pooled, reduced) if pooling == "max" else pooled + reduced
        count += len(batch_scores)
    if count == 0:
        return None
    return pooled if pooling == "max" else (pooled / count).astype(np.float32)
