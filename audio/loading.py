"""Audio loading: any file libsndfile (or audioread) reads -> mono float32 at the model's rate, streamed in blocks.

soundfile and soxr are imported when audio is read or resampled, so importing the ``audio`` package (e.g. the
numpy-only ``audio.windows`` for the torch-free robot loop) needs neither.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

MIN_SAMPLING_RATE = 8_000
MAX_SAMPLING_RATE = 384_000
DEFAULT_BLOCK_SECONDS = 10.0


def check_sampling_rate(rate: int, what: str) -> int:
    """Return `rate` as an int if it is a supported sampling rate, else raise ValueError naming `what`."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise ValueError(f"{what}: sampling rate must be an integer number of Hz, got {rate!r}")
    if not MIN_SAMPLING_RATE <= rate <= MAX_SAMPLING_RATE:
        raise ValueError(
            f"{what}: unsupported sampling rate {rate} Hz; expected {MIN_SAMPLING_RATE}..{MAX_SAMPLING_RATE} Hz"
        )
    return int(rate)


def check_finite(samples: np.ndarray, what: str, offset_seconds: float = 0.0, rate: int = 1) -> None:
    """Raise ValueError naming `what` and the time of the first NaN or infinite sample, if any."""
    bad = ~np.isfinite(samples)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(samples), -1).any(axis=1)))
        raise ValueError(
            f"{what}: non-finite sample (NaN or inf) at {offset_seconds + first / rate:.3f} s; "
            "expected finite audio samples"
        )


def _soundfile_blocks(path: Path, block_seconds: float) -> tuple[int, Iterator[np.ndarray]]:
    import soundfile as sf

    info = sf.info(str(path))
    blocksize = max(1, int(block_seconds * info.samplerate))

    def blocks() -> Iterator[np.ndarray]:
        with sf.SoundFile(str(path)) as handle:
            yield from handle.blocks(blocksize=blocksize, dtype="float32", always_2d=True)

    return info.samplerate, blocks()


def _audioread_blocks(path: Path) -> tuple[int, Iterator[np.ndarray]]:
    with warnings.catch_warnings():  # audioread's raw backend imports modules Python 3.13 removes
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioread

        handle = audioread.audio_open(str(path))
    rate, channels = handle.samplerate, handle.channels

    def blocks() -> Iterator[np.ndarray]:
        leftover = b""
        with handle:
            for buffer in handle:  # 16-bit signed little-endian interleaved PCM
                data = leftover + bytes(buffer)
                usable = len(data) - len(data) % (2 * channels)
                leftover = data[usable:]
                pcm = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, channels)
                yield pcm.astype(np.float32) / 32768.0

    return rate, blocks()


def _open_blocks(path: Path, block_seconds: float) -> tuple[int, Iterator[np.ndarray]]:
    """Sampling rate and (frames, channels) float32 blocks of `path`: libsndfile first, then audioread."""
    import soundfile as sf

    try:
        return _soundfile_blocks(path, block_seconds)
    except sf.LibsndfileError as soundfile_error:
        try:
            return _audioread_blocks(path)
        except Exception as audioread_error:  # audioread raises a different class per backend
            raise ValueError(
                f"{path}: not a readable audio file (libsndfile: {soundfile_error}; audioread: "
                f"{type(audioread_error).__name__}: {audioread_error}); expected wav, flac, ogg or mp3"
            ) from soundfile_error


def stream_audio(
    path: str | os.PathLike, *, sampling_rate: int = 16_000, block_seconds: float = DEFAULT_BLOCK_SECONDS
) -> Iterator[np.ndarray]:
    """Yield the file as consecutive mono float32 blocks at `sampling_rate`, reading `block_seconds` at a time.

    Channels are averaged; any bit depth is scaled to [-1, 1); other rates are resampled (soxr, high quality,
    streaming). Raises FileNotFoundError for a missing file and ValueError for a file that is not audio, has an
    unsupported rate, has NaN/inf samples or holds no samples. Silence is valid audio.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: expected an audio file, got a directory or special file")
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    check_sampling_rate(sampling_rate, "target")
    import soxr

    source_rate, blocks = _open_blocks(path, block_seconds)
    check_sampling_rate(source_rate, str(path))
    resampler = None if source_rate == sampling_rate else soxr.ResampleStream(source_rate, sampling_rate, 1, "float32")
    frames_read = 0
    for block in blocks:
        check_finite(block, str(path), frames_read / source_rate, source_rate)
        frames_read += len(block)
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        out = mono if resampler is None else resampler.resample_chunk(mono)
        if len(out):
            yield np.ascontiguousarray(out, dtype=np.float32)
    if frames_read == 0:
        raise ValueError(f"{path}: zero-length audio (no samples); expected at least one sample")
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if len(tail):
            yield np.ascontiguousarray(tail, dtype=np.float32)


def load_audio(
    path: str | os.PathLike, *, sampling_rate: int = 16_000, block_seconds: float = DEFAULT_BLOCK_SECONDS
) -> np.ndarray:
    """Load a whole audio file as a mono float32 array at `sampling_rate` (see `stream_audio` for the rules)."""
    return np.concatenate(list(stream_audio(path, sampling_rate=sampling_rate, block_seconds=block_seconds)))


def prepare_waveform(waveform, sampling_rate: int | None, *, target_rate: int) -> np.ndarray:
    """Validate an in-memory mono waveform (numpy array or torch tensor) and resample it to `target_rate`.

    Float samples are taken as they are; signed integer samples are scaled by their type's range.
    """
    if sampling_rate is None:
        raise ValueError("an in-memory waveform needs sampling_rate=<Hz>; only file paths carry their own rate")
    check_sampling_rate(sampling_rate, "waveform")
    if hasattr(waveform, "detach"):  # torch.Tensor, without importing torch here
        waveform = waveform.detach().cpu().numpy()
    array = np.asarray(waveform)
    if array.ndim != 1:
        raise ValueError(
            f"waveform: expected a 1-D mono array of samples, got shape {array.shape}; mix channels first, "
            "e.g. waveform.mean(axis=channel_axis)"
        )
    if array.size == 0:
        raise ValueError("waveform: zero-length audio (no samples); expected at least one sample")
    if np.issubdtype(array.dtype, np.signedinteger):
        array = array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))
    elif not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"waveform: expected float or signed integer samples, got dtype {array.dtype}")
    array = array.astype(np.float32, copy=False)
    check_finite(array, "waveform", rate=sampling_rate)
    if sampling_rate != target_rate:
        import soxr

        array = soxr.resample(array, sampling_rate, target_rate).astype(np.float32, copy=False)
    return array
