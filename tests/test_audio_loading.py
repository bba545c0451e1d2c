"""load_audio / stream_audio: formats, bit depths, channels, resampling, streaming, and every bad input."""

import numpy as np
import pytest
import soundfile as sf
import soxr

from audio import load_audio, stream_audio
from audio.loading import prepare_waveform

TONE_HZ = 440.0


def tone(rate: int, seconds: float = 0.5, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float64)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


# (container, subtype, suffix, max quantization error of one sample of a 0.5-amplitude tone)
LOSSLESS = [
    ("WAV", "PCM_U8", "wav", 1 / 128),
    ("WAV", "PCM_16", "wav", 1 / 2**15),
    ("WAV", "PCM_24", "wav", 1 / 2**23),
    ("WAV", "PCM_32", "wav", 6e-8),  # below float32 resolution: float32 rounding dominates
    ("WAV", "FLOAT", "wav", 1e-7),
    ("WAV", "DOUBLE", "wav", 1e-7),
    ("FLAC", "PCM_S8", "flac", 1 / 128),
    ("FLAC", "PCM_16", "flac", 1 / 2**15),
    ("FLAC", "PCM_24", "flac", 1 / 2**23),
]


@pytest.mark.parametrize("container,subtype,suffix,tolerance", LOSSLESS)
def test_lossless_formats_and_bit_depths_round_trip(tmp_path, container, subtype, suffix, tolerance):
    signal = tone(16_000)
    path = tmp_path / f"tone_{subtype}.{suffix}"
    sf.write(path, signal, 16_000, format=container, subtype=subtype)
    loaded = load_audio(path)
    assert loaded.dtype == np.float32 and loaded.shape == signal.shape
    assert np.abs(loaded - signal).max() <= tolerance


@pytest.mark.parametrize("channels", [2, 3, 6])
def test_channels_are_averaged(tmp_path, channels):
    signal = tone(16_000)
    gains = np.arange(1, channels + 1) / channels  # channel k carries (k+1)/C times the tone
    path = tmp_path / f"tone_{channels}ch.wav"
    sf.write(path, signal[:, None] * gains[None, :], 16_000, subtype="FLOAT")
    loaded = load_audio(path)
    np.testing.assert_allclose(loaded, signal * gains.mean(), atol=1e-6)


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000, 96_000])
def test_other_rates_are_resampled_to_16k(tmp_path, rate):
    signal = tone(rate, seconds=1.0)
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, signal, rate, subtype="FLOAT")
    loaded = load_audio(path)
    assert len(loaded) == 16_000
    interior = slice(800, 15_200)  # away from the resampler's edges
    np.testing.assert_allclose(loaded[interior], tone(16_000, seconds=1.0)[interior], atol=3e-3)


def test_target_rate_is_configurable(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(16_000, seconds=1.0), 16_000, subtype="FLOAT")
    assert len(load_audio(path, sampling_rate=32_000)) == 32_000


@pytest.mark.parametrize("container,subtype,suffix", [("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")])
def test_lossy_formats_keep_pitch_and_level(tmp_path, container, subtype, suffix):
    if container not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {container}")
    path = tmp_path / f"tone.{suffix}"
    sf.write(path, tone(44_100, seconds=1.0), 44_100, format=container, subtype=subtype)
    loaded = load_audio(path)
    assert abs(len(loaded) - 16_000) <= 0.1 * 16_000  # codecs add a little padding
    assert abs(dominant_hz(loaded, 16_000) - TONE_HZ) <= 2.0
    rms = float(np.sqrt(np.mean(loaded[1600:-1600] ** 2)))
    assert abs(rms - 0.5 / np.sqrt(2)) <= 0.05


@pytest.mark.parametrize("rate", [16_000, 44_100])
def test_streaming_blocks_match_whole_file_exactly(tmp_path, rate):
    signal = np.random.default_rng(0).uniform(-0.9, 0.9, size=3 * rate)
    path = tmp_path / "noise.wav"
    sf.write(path, signal, rate, subtype="FLOAT")
    blocks = list(stream_audio(path, block_seconds=0.1))
    assert len(blocks) >= 25 and max(len(block) for block in blocks) <= 2 * 0.1 * 16_000  # resampler latency
    whole = soxr.resample(sf.read(path, dtype="float32")[0], rate, 16_000) if rate != 16_000 else signal
    np.testing.assert_array_equal(np.concatenate(blocks), whole.astype(np.float32))


def test_silence_is_valid_audio(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16_000), 16_000)
    np.testing.assert_array_equal(load_audio(path), np.zeros(16_000, dtype=np.float32))


def test_audioread_fallback_reads_what_libsndfile_refuses(tmp_path, monkeypatch):
    path = tmp_path / "tone16.wav"
    sf.write(path, tone(16_000), 16_000, subtype="PCM_16")
    expected = load_audio(path)

    def refuse(*args, **kwargs):
        raise sf.LibsndfileError(1, prefix="Error opening file: ")

    monkeypatch.setattr(sf, "info", refuse)
    np.testing.assert_array_equal(load_audio(path), expected)  # audioread's raw backend, int16 / 32768


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="audio file not found: .*missing.wav"):
        load_audio(tmp_path / "missing.wav")


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(ValueError, match="expected an audio file"):
        load_audio(tmp_path)


def test_text_file_is_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not a sound\n" * 20)
    with pytest.raises(ValueError, match=r"notes.wav: not a readable audio file .*expected wav, flac, ogg or mp3"):
        load_audio(path)


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0), 16_000)
    with pytest.raises(ValueError, match="empty.wav: zero-length audio"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected_with_their_time(tmp_path, bad):
    signal = tone(16_000, seconds=1.0)
    signal[12_000] = bad  # at 0.75 s
    path = tmp_path / "broken.wav"
    sf.write(path, signal, 16_000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"broken.wav: non-finite sample \(NaN or inf\) at 0.750 s"):
        load_audio(path, block_seconds=0.3)


@pytest.mark.parametrize("rate", [4_000, 768_000])
def test_unsupported_file_rate(tmp_path, rate):
    path = tmp_path / "odd_rate.wav"
    sf.write(path, np.zeros(rate // 10), rate)
    with pytest.raises(ValueError, match=rf"odd_rate.wav: unsupported sampling rate {rate} Hz; expected 8000..384000"):
        load_audio(path)


@pytest.mark.parametrize("rate", [0, -16_000, 16_000.5, 1_000_000, None, True])
def test_unsupported_waveform_rate(rate):
    with pytest.raises(ValueError, match="sampling"):
        prepare_waveform(np.zeros(1000, dtype=np.float32), rate, target_rate=16_000)


def test_waveform_checks_and_integer_scaling():
    int16 = (tone(16_000) * 32768).astype(np.int16)
    np.testing.assert_allclose(prepare_waveform(int16, 16_000, target_rate=16_000), tone(16_000), atol=1 / 2**15)
    with pytest.raises(ValueError, match=r"expected a 1-D mono array of samples, got shape \(2, 100\)"):
        prepare_waveform(np.zeros((2, 100)), 16_000, target_rate=16_000)
    with pytest.raises(ValueError, match="zero-length"):
        prepare_waveform(np.zeros(0), 16_000, target_rate=16_000)
    with pytest.raises(ValueError, match=r"non-finite sample \(NaN or inf\) at 0.010 s"):
        prepare_waveform(np.r_[np.zeros(160), np.nan], 16_000, target_rate=16_000)
    with pytest.raises(ValueError, match="expected float or signed integer samples, got dtype uint16"):
        prepare_waveform(np.zeros(100, dtype=np.uint16), 16_000, target_rate=16_000)


def real_clips(shared_data):
    clips = sorted((shared_data / "audio").glob("*/*.*"))
    if not clips:
        pytest.skip("no real clips in shared data")
    return clips


def test_real_clips_load_as_finite_mono_16k(shared_data):
    for clip in real_clips(shared_data):
        info = sf.info(str(clip))
        loaded = load_audio(clip)
        assert loaded.dtype == np.float32 and loaded.ndim == 1
        assert abs(len(loaded) - info.frames * 16_000 / info.samplerate) <= 1, clip.name
        assert np.isfinite(loaded).all() and 0.01 < np.abs(loaded).max() < 1.5, clip.name
