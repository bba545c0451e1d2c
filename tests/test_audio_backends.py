"""The backend registry behind AudioTagger.from_pretrained: names, directories, hub ids, new backends."""

import json

import numpy as np
import pytest

from audio import AudioTagger, backends, register_backend
from audio.ast import ASTTagger
from audio.backends import _BACKENDS
from audio.labels import audioset_labels
from audio.yamnet import YAMNetTagger
from tests.test_audio_tagger import MAX_FRAMES, small_ast


class ConstantTagger(AudioTagger):
    """A toy backend: two labels, scores from the window's peak."""

    labels, mids, window_samples = ("Loud", "Quiet"), (None, None), 800
    sampling_rate = 8_000
    loaded_from = None

    def window_scores(self, windows):
        peaks = np.array([np.abs(w).max() for w in windows], dtype=np.float32)
        return np.stack([peaks, 1 - peaks], axis=1)

    @classmethod
    def load(cls, name_or_path, **options):
        tagger = cls()
        tagger.loaded_from, tagger.options = name_or_path, options
        return tagger


@pytest.fixture
def toy_backend():
    register_backend("toy", ConstantTagger.load, accepts=lambda config: config.get("model_type") == "toy",
                     packaged=True)
    yield
    del _BACKENDS["toy"]


def test_yamnet_is_the_packaged_default():
    assert backends()[:2] == ("yamnet", "ast")
    assert isinstance(AudioTagger.from_pretrained("yamnet"), YAMNetTagger)


def test_ast_directory_is_told_by_its_config(tmp_path):
    from transformers import ASTFeatureExtractor

    small_ast([name for _, name in audioset_labels()]).save_pretrained(tmp_path)
    ASTFeatureExtractor(max_length=MAX_FRAMES).save_pretrained(tmp_path)
    tagger = AudioTagger.from_pretrained(tmp_path, fast=True)
    assert isinstance(tagger, ASTTagger) and tagger.fast and tagger.default_pooling == "max"


def test_offline_hub_id_goes_to_ast_with_its_clear_error():
    with pytest.raises(FileNotFoundError, match="AST model 'org/not-cached' is not cached locally .*HF_HUB_OFFLINE=1"):
        AudioTagger.from_pretrained("org/not-cached")


def test_unknown_name_is_an_error():
    with pytest.raises(ValueError, match=r"unknown audio model 'yamnet-large': expected a registered name \(yamnet\)"):
        AudioTagger.from_pretrained("yamnet-large")


def test_a_new_backend_is_one_registry_entry(toy_backend, tmp_path):
    tagger = AudioTagger.from_pretrained("toy", threshold=3)
    assert isinstance(tagger, ConstantTagger) and (tagger.loaded_from, tagger.options) == ("toy", {"threshold": 3})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "toy"}))
    assert AudioTagger.from_pretrained(tmp_path).loaded_from == tmp_path
    clip = np.concatenate([np.full(800, 0.25, np.float32), np.full(800, 0.75, np.float32)])
    tags = tagger(clip, sampling_rate=8_000, top_k=2)  # the shared logic: windows, max pooling, top-k
    assert [(t.label, t.score) for t in tags] == [("Loud", 0.75), ("Quiet", 0.75)]
    assert [round(t.score, 6) for t in tagger(clip, sampling_rate=8_000, pooling="mean", top_k=None)] == [0.5, 0.5]


def test_bad_registrations():
    with pytest.raises(ValueError, match="backend name must be"):
        register_backend("a/b", ConstantTagger.load, accepts=lambda config: False)
    with pytest.raises(ValueError, match="another backend already takes hub ids"):
        register_backend("other-hub", ConstantTagger.load, accepts=lambda config: False, hub_ids=True)
