"""AudioTagger end to end on a small AST checkpoint that the tests build and save: loading, scores, windows, pooling,
fast paths, offline errors and bad inputs."""

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, ViTConfig

from audio import AudioTagger, Cue, Tag
from audio.ast import ASTTagger
from audio.ast.fast import forward_trimmed, trimmed_num_frames
from audio.labels import audioset_labels

MAX_FRAMES = 64  # window = 63 * 160 + 400 samples = 0.655 s at 16 kHz
WINDOW = (MAX_FRAMES - 1) * 160 + 400


def small_ast(labels: list[str], seed: int = 0, **config) -> ASTForAudioClassification:
    torch.manual_seed(seed)
    model = ASTForAudioClassification(
        ASTConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_length=MAX_FRAMES,
            id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)}, **config,
        )
    )
    embeddings = model.audio_spectrogram_transformer.embeddings
    with torch.no_grad():  # transformers initialises these to zero; real checkpoints are not
        for parameter in (embeddings.position_embeddings, embeddings.cls_token, embeddings.distillation_token):
            parameter.normal_(std=0.5)
        model.classifier.dense.weight.normal_(std=0.5)  # spread the scores so that their order means something
    return model.eval()


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small AST with the 527 AudioSet labels, saved as a transformers checkpoint directory."""
    directory = tmp_path_factory.mktemp("ast_audioset")
    small_ast([name for _, name in audioset_labels()]).save_pretrained(directory)
    ASTFeatureExtractor(max_length=MAX_FRAMES).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tagger(checkpoint):
    return AudioTagger.from_pretrained(checkpoint)


def noise(samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, samples).astype(np.float32)


def reference_scores(checkpoint, waveform: np.ndarray) -> np.ndarray:
    """transformers' own pipeline, independent of audio/: extractor -> model -> sigmoid."""
    model = ASTForAudioClassification.from_pretrained(checkpoint).eval()
    extractor = ASTFeatureExtractor.from_pretrained(checkpoint)
    with torch.no_grad():
        logits = model(**extractor(waveform, sampling_rate=16_000, return_tensors="pt")).logits
    return torch.sigmoid(logits)[0].numpy()


def test_from_pretrained_directory_labels_and_mids(tagger):
    table = audioset_labels()
    assert tagger.labels == tuple(name for _, name in table)
    assert tagger.mids == tuple(mid for mid, _ in table)
    assert tagger.mids[0] == "/m/09x0r" and tagger.multi_label
    assert tagger.window_samples == WINDOW and tagger.sampling_rate == 16_000


def test_exact_scores_match_transformers_pipeline(checkpoint, tagger):
    waveform = noise(8_000, seed=1)
    np.testing.assert_allclose(tagger.scores(waveform, sampling_rate=16_000), reference_scores(checkpoint, waveform),
                               rtol=0, atol=1e-6)


def test_tags_are_top_k_sorted_with_fields(tagger):
    waveform = noise(8_000, seed=2)
    scores = tagger.scores(waveform, sampling_rate=16_000)
    tags = tagger(waveform, sampling_rate=16_000, top_k=5)
    assert len(tags) == 5 and all(isinstance(tag, Tag) for tag in tags)
    assert [tag.index for tag in tags] == list(np.argsort(-scores, kind="stable")[:5])
    assert [tag.score for tag in tags] == sorted((tag.score for tag in tags), reverse=True)
    for tag in tags:
        assert tag.label == tagger.labels[tag.index] and tag.mid == tagger.mids[tag.index]
        assert tag.score == pytest.approx(float(scores[tag.index]), abs=0)
    assert tags[0].to_dict() == {"label": tags[0].label, "score": tags[0].score, "index": tags[0].index,
                                 "mid": tags[0].mid}
    assert len(tagger(waveform, sampling_rate=16_000, top_k=None)) == 527


def test_resampled_waveform_equals_file(tmp_path, tagger):
    waveform = noise(44_100, seed=3)
    path = tmp_path / "noise44k.wav"
    sf.write(path, waveform, 44_100, subtype="FLOAT")
    np.testing.assert_array_equal(tagger.scores(path), tagger.scores(waveform, sampling_rate=44_100))


def test_torch_and_integer_waveforms_equal_float_numpy(tagger):
    waveform = noise(8_000, seed=12)
    expected = tagger.scores(waveform, sampling_rate=16_000)
    np.testing.assert_array_equal(tagger.scores(torch.from_numpy(waveform), sampling_rate=16_000), expected)
    int16 = np.round(waveform * 32768).astype(np.int16)  # |samples| < 0.5: no clipping
    np.testing.assert_allclose(tagger.scores(int16, sampling_rate=16_000), expected, rtol=0, atol=1e-4)


def test_windows_are_pooled_by_max_and_mean(tagger):
    first, second = noise(WINDOW, seed=4), 0.1 * np.sin(np.arange(WINDOW) / 3).astype(np.float32)
    clip = np.concatenate([first, second])
    per_window = np.stack([tagger.scores(part, sampling_rate=16_000) for part in (first, second)])
    # batches of 2 windows vs 1 window: identical up to float32 rounding in the batched matmuls
    np.testing.assert_allclose(tagger.scores(clip, sampling_rate=16_000), per_window.max(axis=0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(tagger.scores(clip, sampling_rate=16_000, pooling="mean"), per_window.mean(axis=0),
                               rtol=0, atol=1e-6)
    assert not np.allclose(per_window[0], per_window[1], atol=1e-3)  # pooling has something to pool


def test_hop_adds_overlapping_windows(tagger):
    clip = noise(2 * WINDOW + 1000, seed=5)
    half = WINDOW // 2
    starts = [0, half, 2 * half, len(clip) - WINDOW]  # the last one is aligned to the clip's end
    per_window = np.stack([tagger.scores(clip[s : s + WINDOW], sampling_rate=16_000) for s in starts])
    pooled = tagger.scores(clip, sampling_rate=16_000, hop_seconds=half / 16_000, pooling="mean")
    np.testing.assert_allclose(pooled, per_window.mean(axis=0), rtol=0, atol=1e-6)


def test_file_streaming_is_memory_bounded(tmp_path, tagger):
    seconds = 120
    path = tmp_path / "long.wav"
    sf.write(path, noise(16_000 * seconds, seed=6), 16_000, subtype="PCM_16")
    whole_file_bytes = 16_000 * seconds * 4  # the float32 array load_audio would return
    tracemalloc.start()
    try:
        scores = tagger.scores(path, block_seconds=2.0, batch_size=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scores.shape == (527,)
    assert peak < 0.2 * whole_file_bytes, f"peak {peak} bytes for a {whole_file_bytes}-byte file"


def test_fast_path_on_a_full_window_is_the_exact_path(checkpoint, tagger):
    fast = AudioTagger.from_pretrained(checkpoint, fast=True)
    clip = noise(WINDOW, seed=7)
    np.testing.assert_allclose(fast.scores(clip, sampling_rate=16_000), tagger.scores(clip, sampling_rate=16_000),
                               rtol=0, atol=1e-6)


def test_fast_path_equals_a_shorter_ast_with_sliced_position_embeddings(checkpoint):
    """The trimmed forward is transformers' AST built for the trimmed length, with its time positions sliced."""
    fast = AudioTagger.from_pretrained(checkpoint, fast=True)
    config = fast.model.config
    clip = noise(4_000, seed=8)  # 24 frames -> trimmed to 26 frames: 2 time patches instead of 5
    frames = trimmed_num_frames((len(clip) - 400) // 160 + 1, config)
    assert frames == 26
    short_config = ASTConfig(**{**config.to_dict(), "max_length": frames})
    short = ASTForAudioClassification(short_config).eval()
    state = fast.model.state_dict()
    key = "audio_spectrogram_transformer.embeddings.position_embeddings"
    freq, time = fast.model.audio_spectrogram_transformer.embeddings.get_shape(config)
    kept = (frames - config.patch_size) // config.time_stride + 1
    grid = state[key][:, 2:].reshape(1, freq, time, -1)[:, :, :kept].reshape(1, freq * kept, -1)
    short.load_state_dict({**state, key: torch.cat([state[key][:, :2], grid], dim=1)})
    features = fast.feature_extractor(clip, sampling_rate=16_000, return_tensors="pt")["input_values"][:, :frames]
    with torch.no_grad():
        expected = torch.sigmoid(short(input_values=features).logits)[0].numpy()
    np.testing.assert_allclose(fast.scores(clip, sampling_rate=16_000), expected, rtol=0, atol=1e-6)
    exact = AudioTagger.from_pretrained(checkpoint).scores(clip, sampling_rate=16_000)
    assert np.abs(exact - expected).max() > 1e-4  # trimming really changed what the model saw


def test_trimmed_frames_cover_every_real_frame():
    config = ASTConfig(max_length=1024)
    assert [trimmed_num_frames(n, config) for n in (1, 16, 17, 26, 27, 98, 1000, 1024)] == [
        16, 16, 26, 26, 36, 106, 1006, 1024]
    with pytest.raises(ValueError, match="expected 16..64"):
        forward_trimmed(small_ast(["a", "b"]), torch.zeros(1, 65, 128))


def test_quantized_fast_path_replaces_linear_layers_and_stays_close(checkpoint, tagger):
    quantized = AudioTagger.from_pretrained(checkpoint, fast=True, quantize=True)
    def count(model, kind):
        return sum(isinstance(module, kind) for module in model.modules())

    linear_layers = count(tagger.model, torch.nn.Linear)
    assert linear_layers == 2 * 6 + 1  # q, k, v, attention out, intermediate, output per layer + classifier
    assert count(quantized.model, torch.ao.nn.quantized.dynamic.Linear) == linear_layers
    assert count(quantized.model, torch.nn.Linear) == 0
    assert count(AudioTagger.from_pretrained(checkpoint).model, torch.nn.Linear) == linear_layers
    clip = noise(WINDOW, seed=9)
    difference = np.abs(quantized.scores(clip, sampling_rate=16_000) - tagger.scores(clip, sampling_rate=16_000))
    assert 0 < difference.max() < 0.05


def test_single_label_checkpoint_uses_softmax_and_no_mids(tmp_path):
    small_ast(["yes", "no", "Speech"], problem_type="single_label_classification").save_pretrained(tmp_path)
    ASTFeatureExtractor(max_length=MAX_FRAMES).save_pretrained(tmp_path)
    tagger = AudioTagger.from_pretrained(tmp_path)
    scores = tagger.scores(noise(8_000, seed=10), sampling_rate=16_000)
    assert not tagger.multi_label and scores.sum() == pytest.approx(1.0, abs=1e-6)
    assert tagger.mids == (None, None, None)


def test_silence_is_not_an_error(tagger):
    tags = tagger(np.zeros(16_000, dtype=np.float32), sampling_rate=16_000, top_k=3)
    assert len(tags) == 3 and all(0.0 <= tag.score <= 1.0 for tag in tags)


def test_cue_from_audio(tagger):
    waveform = noise(8_000, seed=11)
    cue = tagger.cue(waveform, sampling_rate=16_000, top_k=3)
    tags = tagger(waveform, sampling_rate=16_000, top_k=3)
    assert cue == Cue(labels=tuple((tag.label, tag.score) for tag in tags), source="audio")


def test_offline_hub_id_fails_fast_with_instructions():
    model_id = "crossmodal-tests/no-such-ast-checkpoint"
    with pytest.raises(FileNotFoundError) as raised:
        AudioTagger.from_pretrained(model_id)
    message = str(raised.value)
    assert f"'{model_id}' is not cached locally" in message and "HF_HUB_OFFLINE=1" in message
    assert "AudioTagger.from_pretrained('/path/to/ast-dir')" in message


def test_unreachable_hub_fails_fast_without_transformers_retries(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    probes = []

    def no_network(address, timeout):
        probes.append((address, timeout))
        raise OSError("Name or service not known")

    monkeypatch.setattr("audio.ast.tagger.socket.create_connection", no_network)
    with pytest.raises(FileNotFoundError) as raised:
        AudioTagger.from_pretrained("crossmodal-tests/no-such-ast-checkpoint")
    assert probes == [(("huggingface.co", 443), 3.0)]
    assert ("is not cached locally and cannot be downloaded (HubUnreachableError: cannot reach huggingface.co:443: "
            "Name or service not known)") in str(raised.value)


def test_missing_or_incomplete_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="AST model directory not found: .*nowhere"):
        AudioTagger.from_pretrained(tmp_path / "nowhere")
    small_ast(["a", "b"]).save_pretrained(tmp_path)  # no preprocessor_config.json
    with pytest.raises(FileNotFoundError, match="not a complete AST checkpoint directory"):
        AudioTagger.from_pretrained(tmp_path)


def test_non_ast_checkpoint_is_rejected(tmp_path):
    ViTConfig().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="expected an AST checkpoint .* got 'vit'"):
        AudioTagger.from_pretrained(tmp_path)


def test_missing_torchaudio_is_an_error_not_a_silent_feature_change(monkeypatch):
    monkeypatch.setattr("audio.ast.tagger.is_speech_available", lambda: False)
    with pytest.raises(ImportError, match="needs torchaudio"):
        ASTTagger(small_ast(["a"]), ASTFeatureExtractor(max_length=MAX_FRAMES))


def test_mismatched_feature_extractor_is_rejected():
    with pytest.raises(ValueError, match="does not match the model"):
        ASTTagger(small_ast(["a"]), ASTFeatureExtractor(max_length=1024))


@pytest.mark.parametrize(
    "audio,options,message",
    [
        (np.zeros(8_000, dtype=np.float32), {}, "needs sampling_rate"),
        (np.zeros(100, dtype=np.float32), {"sampling_rate": 16_000}, "audio too short: 100 samples"),
        (np.zeros(8_000, dtype=np.float32), {"sampling_rate": 16_000, "pooling": "median"}, "pooling must be"),
        (np.zeros(8_000, dtype=np.float32), {"sampling_rate": 16_000, "hop_seconds": 0}, "hop_seconds must be"),
        (np.zeros(8_000, dtype=np.float32), {"sampling_rate": 16_000, "hop_seconds": 1.0}, "hop_seconds must be"),
        (np.zeros(8_000, dtype=np.float32), {"sampling_rate": 16_000, "top_k": 0}, "top_k must be"),
        (np.zeros(8_000, dtype=np.float32), {"sampling_rate": 16_000, "top_k": 528}, "top_k must be"),
        (np.full(8_000, np.nan, dtype=np.float32), {"sampling_rate": 16_000}, "non-finite"),
    ],
)
def test_bad_inputs(tagger, audio, options, message):
    with pytest.raises(ValueError, match=message):
        tagger(audio, **options)


def test_file_with_explicit_rate_is_rejected(tmp_path, tagger):
    path = tmp_path / "tone.wav"
    sf.write(path, np.zeros(8_000), 16_000)
    with pytest.raises(ValueError, match="sampling_rate is read from the file"):
        tagger(path, sampling_rate=16_000)


def test_real_clips_are_tagged(shared_data, tagger):
    clips = sorted((shared_data / "audio").glob("*/*.*"))
    if not clips:
        pytest.skip("no real clips in shared data")
    for clip in clips[:4]:
        tags = tagger(clip, top_k=3)
        assert len(tags) == 3 and tags[0].score >= tags[1].score >= tags[2].score, clip.name
