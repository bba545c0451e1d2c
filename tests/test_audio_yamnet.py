"""YAMNet backend: front end and network against Google's TFLite runtime on the shared clips, the converter's
reproducibility, silence handling, pooling, batching, bad inputs."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from audio import AudioTagger, Cue, load_audio
from audio.windows import iter_windows, trim_silence
from audio.yamnet import LogMelConfig, LogMelFrontend, YAMNetTagger
from audio.yamnet.quant import int8_linear, quantize_rows
from audio.yamnet.reference import tflite_outputs
from audio.yamnet.tagger import PACKAGED

RATE, WINDOW, HOP = 16_000, 15_600, 7_680
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tagger() -> YAMNetTagger:
    return AudioTagger.from_pretrained("yamnet")


def tone(seconds: float, hertz: float = 440.0, seed: int = 0) -> np.ndarray:
    """A tone with a little noise, loud from its first to its last sample."""
    t = np.arange(round(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).uniform(-0.05, 0.05, len(t))
    return (0.5 * np.sin(2 * np.pi * hertz * t) + noise).astype(np.float32)


@pytest.fixture(scope="module")
def tflite_reference(shared_data):
    """Per shared clip: the tagger's windows (15,600 samples every 7,680; the last aligned to the end; a short
    clip zero-padded) and what Google's runtime computes on each: scores and log-mel patch."""
    pytest.importorskip("ai_edge_litert")
    model = shared_data / "audio-models" / "yamnet" / "yamnet.tflite"
    clips = sorted((shared_data / "audio").glob("*/*.*"))
    if not model.is_file() or len(clips) < 24:
        pytest.skip("YAMNet TFLite export or shared clips missing")
    reference = {}
    for clip in clips:
        windows = np.stack([np.pad(w, (0, WINDOW - len(w))) for w in iter_windows([load_audio(clip)], WINDOW, HOP)])
        reference[f"{clip.parent.name}/{clip.name}"] = (windows, *tflite_outputs(model, windows))
    return reference


def test_front_end_matches_tflite_log_mel(tflite_reference, tagger):
    """The runtime's own square root is not correctly rounded on x86 (XNNPACK: rsqrt + one Newton step), so a
    few quantised mel inputs round the other way: rare log-mel cells differ by up to ~1e-3 to ~3e-3, the rest by
    ~2e-6. XNNPACK picks its kernels by the CPU's instruction sets, so the rare ones vary between machines
    (measured max: 1.1e-3 on one x86 machine, 2.8e-3 on an AVX-512 AMD EPYC)."""
    differences = []
    for windows, _, log_mel in tflite_reference.values():
        with torch.inference_mode():
            ours = tagger.frontend(torch.from_numpy(windows)).numpy()
        assert ours.shape == log_mel.shape == (len(windows), 96, 64)
        differences.append(np.abs(ours - log_mel).ravel())
    differences = np.concatenate(differences)
    assert differences.max() <= 5e-3, differences.max()
    assert np.quantile(differences, 0.9999) <= 1e-5
    assert len(differences) == 118 * 96 * 64  # every window of all 24 clips


def test_network_matches_tflite_on_its_own_log_mel(tflite_reference, tagger):
    """Fed the runtime's log-mel patches, nearly all scores agree to 1e-3; a last-bit difference in a float
    depthwise convolution that flips one activation's int8 rounding moves a few scores of a window more."""
    differences = []
    for _, scores, log_mel in tflite_reference.values():
        with torch.inference_mode():
            ours = torch.sigmoid(tagger.model(torch.from_numpy(log_mel))).numpy()
        differences.append(np.abs(ours - scores))
    differences = np.concatenate(differences)
    assert (differences <= 1e-3).mean() >= 0.99, (differences <= 1e-3).mean()
    assert differences.max() <= 0.06, differences.max()


def test_scores_match_tflite_on_every_window(tflite_reference, tagger):
    """The same top label on every window, but for ties: the machine-dependent rounding above moves scores by up
    to ~0.04, so a window whose best two labels the runtime scores within 0.01 may flip (measured: none on one x86
    machine, one of 118 on an AMD EPYC: lion.ogg, margin 6e-4)."""
    differences, flipped_margins = [], []
    for windows, scores, _ in tflite_reference.values():
        ours = tagger.window_scores(list(windows))
        differences.append(np.abs(ours - scores))
        best_two = np.sort(scores, axis=1)[:, -2:]
        flipped = ours.argmax(axis=1) != scores.argmax(axis=1)
        flipped_margins += list(best_two[flipped, 1] - best_two[flipped, 0])
    differences = np.concatenate(differences)
    assert len(differences) == 118 and len(flipped_margins) <= 2 and all(m < 0.01 for m in flipped_margins)
    assert (differences <= 1e-3).mean() >= 0.98, (differences <= 1e-3).mean()
    assert differences.max() <= 0.05, differences.max()


def test_converter_is_byte_for_byte_reproducible(shared_data, tmp_path):
    pytest.importorskip("tflite")
    source = shared_data / "audio-models" / "yamnet"
    if not (source / "yamnet.tflite").is_file():
        pytest.skip("YAMNet TFLite export missing")
    spec = importlib.util.spec_from_file_location("convert_yamnet", REPO / "scripts" / "convert_yamnet.py")
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    args = ["--tflite", str(source / "yamnet.tflite"), "--class-map", str(source / "yamnet_class_map.csv"),
            "--out", str(tmp_path)]
    assert converter.cli(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(p.name for p in PACKAGED.iterdir()) == [
        "LICENSE", "NOTICE", "config.json", "labels.tsv", "model.safetensors"]
    for name in names:
        assert (tmp_path / name).read_bytes() == (PACKAGED / name).read_bytes(), name


def test_packaged_model_labels_and_provenance(tagger):
    assert (len(tagger.labels), tagger.labels[0], tagger.mids[0]) == (521, "Speech", "/m/09x0r")
    assert tagger.labels[76] == "Cat" and tagger.mids[76] == "/m/01yrx"
    assert tagger.sampling_rate == RATE and tagger.window_samples == WINDOW and tagger.hop_samples == HOP
    source = tagger.model.config.source
    assert source["tflite_sha256"] == "469be6a3421cbc52cf97e9f2f966cba984198e8e7af9854d68b3e3ebb1e04194"
    assert sum(p.stat().st_size for p in PACKAGED.iterdir()) < 4.5e6


def test_save_and_load_round_trip(tmp_path, tagger):
    tagger.save_pretrained(tmp_path / "copy")
    copy = AudioTagger.from_pretrained(tmp_path / "copy")
    assert isinstance(copy, YAMNetTagger) and copy.labels == tagger.labels and copy.mids == tagger.mids
    clip = tone(2.0)
    np.testing.assert_array_equal(copy.scores(clip, sampling_rate=RATE), tagger.scores(clip, sampling_rate=RATE))
    (tmp_path / "copy" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="not a YAMNet model directory .missing model.safetensors"):
        YAMNetTagger.from_pretrained(tmp_path / "copy")


def test_quantize_rows_is_xnnpack_qd8():
    x = torch.tensor([[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0], [0.0, 0.0, 0.0]])
    values, scale = quantize_rows(x, dim=-1)
    # row 0: range [0, 2] -> 255 steps, zero point -128, and 1 * (1 / (1 / 127.5)) rounds just below 127.5;
    # row 1: range [-1, 3], zero point -64; row 2: flat -> scale 1
    np.testing.assert_array_equal(values.numpy(), [[0, 127, 255], [-64, 32, 191], [0, 0, 0]])
    np.testing.assert_allclose(scale.numpy().ravel(), [2 / 255, 4 / 255, 1.0], rtol=1e-7)
    weight = torch.tensor([[1.0, -2.0, 3.0]])
    out = int8_linear(x[:2], weight, torch.tensor([0.5]), torch.tensor([0.25]))
    np.testing.assert_allclose(out.numpy().ravel(), [0.5 * (0 - 254 + 765) * 2 / 255 + 0.25,
                                                     0.5 * (-64 - 64 + 573) * 4 / 255 + 0.25], rtol=1e-6)


def test_front_end_puts_a_tone_in_its_mel_band():
    frontend = LogMelFrontend()
    for hertz in (300.0, 1000.0, 4000.0):
        log_mel = frontend(torch.from_numpy(tone(0.975, hertz))[None])[0]
        assert log_mel.shape == (96, 64)
        band = int(log_mel.mean(dim=0).argmax())
        edges = 1127 * np.log1p(np.array([125.0, 7500.0]) / 700)
        centres = 700 * np.expm1(np.linspace(*edges, 66)[1:-1] / 1127)
        assert abs(centres[band] - hertz) <= 0.1 * hertz, (hertz, centres[band])
    with pytest.raises(ValueError, match=r"expected waveforms of shape \(batch, samples >= 400\)"):
        frontend(torch.zeros(1, 399))
    assert LogMelConfig().patch_samples == WINDOW and LogMelConfig().fft_length == 512


def test_one_forward_over_all_patches_equals_per_patch_forwards(tagger):
    windows = np.stack(list(iter_windows([tone(4.0, 660.0, seed=1)], WINDOW, HOP)))
    with torch.inference_mode():
        patches = tagger.frontend(torch.from_numpy(windows))
        batched = tagger.model(patches)
        single = torch.cat([tagger.model(patch[None]) for patch in patches])
    assert len(patches) == 8
    np.testing.assert_allclose(batched.numpy(), single.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(tagger.frontend(torch.from_numpy(windows[3:4])).numpy(), patches[3:4].numpy())
    # consecutive windows share their frames, computed once: the same bits as window by window
    last = tone(0.4, 660.0, seed=2)  # a short window (padded) and an overlapping one that breaks the run
    shared = tagger.patches([*windows, last, windows[-1][-HOP - 1000 :]])
    single = tagger.frontend(torch.from_numpy(np.stack(
        [*windows, np.pad(last, (0, WINDOW - len(last))), np.pad(windows[-1][-HOP - 1000 :], (0, WINDOW - HOP - 1000))])))
    np.testing.assert_array_equal(shared.numpy(), single.numpy())


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_digital_silence_around_a_clip_changes_nothing(tagger, pooling):
    clip = tone(1.7)
    padded = np.concatenate([np.zeros(2 * RATE + 123, np.float32), clip, np.zeros(RATE + 45, np.float32)])
    expected = tagger.scores(clip, sampling_rate=RATE, pooling=pooling)
    np.testing.assert_array_equal(tagger.scores(padded, sampling_rate=RATE, pooling=pooling), expected)
    kept = tagger.scores(padded, sampling_rate=RATE, pooling=pooling, drop_silence=False)
    assert np.abs(kept - expected).max() > 0.01  # without dropping, the silence does change the scores


def test_silent_windows_inside_a_clip_are_dropped(tagger):
    clip = np.concatenate([tone(1.2), np.zeros(3 * RATE, np.float32), tone(1.0, 880.0)])
    windows = list(iter_windows([clip], WINDOW, HOP))
    loud = [w for w in windows if np.abs(w).max() > 2**-15]
    assert len(loud) < len(windows)
    expected = tagger.window_scores(loud).mean(axis=0)
    np.testing.assert_allclose(tagger.scores(clip, sampling_rate=RATE), expected, rtol=0, atol=1e-6)


def test_silent_clip_gives_no_tags_and_no_cue(tagger):
    silence = np.zeros(2 * RATE, np.float32)
    silence[::97] = 2**-15  # dither at one 16-bit step is still digital silence
    assert tagger.scores(silence, sampling_rate=RATE) is None
    assert tagger(silence, sampling_rate=RATE) == []
    assert tagger.cue(silence, sampling_rate=RATE) is None
    kept = tagger(silence, sampling_rate=RATE, drop_silence=False, top_k=1)
    assert kept[0].label == "Silence"  # what YAMNet itself says when made to look


def test_pooling_mean_and_max_over_windows(tagger):
    clip = np.concatenate([tone(1.0, 440.0), tone(1.5, 2000.0, seed=3)])
    per_window = tagger.window_scores(list(iter_windows([clip], WINDOW, HOP)))
    assert len(per_window) == 5 and tagger.default_pooling == "mean"
    np.testing.assert_array_equal(tagger.scores(clip, sampling_rate=RATE, pooling="max"), per_window.max(axis=0))
    np.testing.assert_allclose(tagger.scores(clip, sampling_rate=RATE), per_window.mean(axis=0), rtol=0, atol=1e-7)
    assert np.abs(per_window.max(axis=0) - per_window.mean(axis=0)).max() > 0.01


def test_tags_and_cue_carry_mids(tagger):
    clip = tone(1.0)
    tags = tagger(clip, sampling_rate=RATE, top_k=3)
    cue = tagger.cue(clip, sampling_rate=RATE, top_k=3)
    assert cue == Cue(labels=tuple((t.label, t.score) for t in tags), source="audio")
    assert cue.mids == tuple(t.mid for t in tags) == tuple(tagger.mids[t.index] for t in tags)
    assert cue.to_dict()["labels"][0] == {"label": tags[0].label, "score": tags[0].score, "mid": tags[0].mid}


def test_other_rates_are_resampled_and_files_equal_waveforms(tmp_path, tagger):
    clip44 = soxr.resample(tone(1.5), RATE, 44_100).astype(np.float32)
    expected = tagger.scores(soxr.resample(clip44, 44_100, RATE).astype(np.float32), sampling_rate=RATE)
    np.testing.assert_array_equal(tagger.scores(clip44, sampling_rate=44_100), expected)
    path = tmp_path / "clip44.wav"
    sf.write(path, clip44, 44_100, subtype="FLOAT")
    np.testing.assert_array_equal(tagger.scores(path), expected)


def test_short_clip_is_padded_like_yamnet(tagger):
    clip = tone(0.3)
    padded = np.pad(clip, (0, WINDOW - len(clip)))
    np.testing.assert_array_equal(tagger.scores(clip, sampling_rate=RATE), tagger.window_scores([padded])[0])


@pytest.mark.parametrize(
    "audio,options,message",
    [
        (np.zeros((2, 16_000), np.float32), {"sampling_rate": RATE}, "expected a 1-D mono array"),
        (np.zeros(0, np.float32), {"sampling_rate": RATE}, "zero-length audio"),
        (np.zeros(16_000, np.float32), {}, "needs sampling_rate"),
        (tone(1.0), {"sampling_rate": RATE, "pooling": "median"}, "pooling must be"),
        (tone(1.0), {"sampling_rate": RATE, "hop_seconds": 2.0}, r"hop_seconds must be in \(0, 0.975\]"),
        (tone(1.0), {"sampling_rate": RATE, "top_k": 522}, r"top_k must be in 1..521"),
    ],
)
def test_bad_inputs(tagger, audio, options, message):
    with pytest.raises(ValueError, match=message):
        tagger(audio, **options)


def test_mismatched_labels_are_rejected(tagger):
    with pytest.raises(ValueError, match="expected 521 labels and mids"):
        YAMNetTagger(tagger.model, tagger.labels[:5], tagger.mids[:5])


def test_trim_silence_cuts_the_ends_and_bounds_what_it_holds():
    quiet, loud = np.zeros(5, np.float32), np.ones(3, np.float32)
    blocks = [quiet, np.concatenate([quiet, loud, quiet[:2]]), quiet[:2], loud, quiet]
    out = np.concatenate(list(trim_silence(blocks, peak=0.0, max_held=10)))
    np.testing.assert_array_equal(out, np.concatenate([loud, np.zeros(4, np.float32), loud]))
    long_gap = [loud, np.zeros(12, np.float32), loud, np.zeros(12, np.float32), np.zeros(3, np.float32)]
    out = np.concatenate(list(trim_silence(long_gap, peak=0.0, max_held=10)))
    assert len(out) == 3 + 12 + 3 + 15  # a quiet run longer than max_held is passed on whole, even at the end
