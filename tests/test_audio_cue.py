"""Cue / TextCue, the AudioSet label table and its generator, and the sliding-window stream."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio import Cue, TextCue
from audio.build_label_table import TABLE_PATH, get_args_parser, main
from audio.labels import audioset_labels, audioset_mids
from audio.windows import iter_windows


def test_text_cue_is_a_cue():
    cue = TextCue("  find the cat ")
    assert cue == Cue(labels=(("find the cat", 1.0),), source="text")
    assert json.loads(json.dumps(cue.to_dict())) == {"source": "text", "labels": [{"label": "find the cat",
                                                                                   "score": 1.0}]}


def test_cue_is_frozen_and_normalises_scores_to_float():
    cue = Cue(labels=[("Meow", np.float32(0.75)), ("Cat", 1)], source="audio")
    assert cue.labels == (("Meow", 0.75), ("Cat", 1.0)) and all(type(s) is float for _, s in cue.labels)
    with pytest.raises(AttributeError):
        cue.source = "text"


@pytest.mark.parametrize(
    "labels,source,message",
    [
        ((("cat", 0.5),), "video", "source must be one of"),
        ((), "audio", "at least one"),
        ((("", 0.5),), "audio", "non-empty strings"),
        ((("cat", 1.5),), "audio", r"finite number in \[0, 1\]"),
        ((("cat", float("nan")),), "audio", r"finite number in \[0, 1\]"),
    ],
)
def test_bad_cues(labels, source, message):
    with pytest.raises(ValueError, match=message):
        Cue(labels=labels, source=source)


@pytest.mark.parametrize("text", ["", "   ", None])
def test_bad_text_cue(text):
    with pytest.raises(ValueError, match="non-empty text"):
        TextCue(text)


def test_label_table_is_what_the_generator_writes(shared_data, tmp_path):
    output = tmp_path / "labels.tsv"
    args = get_args_parser().parse_args(
        ["--source", str(shared_data / "audioset" / "class_labels_indices.csv"), "--output", str(output)])
    assert main(args) == {"output": str(output), "labels": 527}
    assert output.read_bytes() == TABLE_PATH.read_bytes()


def test_label_table_and_mids():
    table = audioset_labels()
    assert len(table) == 527 and table[0] == ("/m/09x0r", "Speech") and table[526] == ("/m/07hvw1", "Field recording")
    assert "CC BY 4.0" in TABLE_PATH.read_text(encoding="utf-8").split("mid\tdisplay_name")[0]
    assert audioset_mids(["Meow", "Cat"]) == ("/m/07qrkrw", "/m/01yrx")
    assert audioset_mids(["Meow", "yes"]) == (None, None)


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 400),
    window=st.integers(1, 60),
    hop_fraction=st.floats(0.01, 1.0),
    block_sizes=st.lists(st.integers(1, 97), min_size=1, max_size=8),
)
def test_windows_from_any_blocking_match_the_reference(length, window, hop_fraction, block_sizes):
    hop = max(1, int(window * hop_fraction))
    signal = np.arange(length, dtype=np.float32)
    blocks, start, i = [], 0, 0
    while start < length:
        size = block_sizes[i % len(block_sizes)]
        blocks.append(signal[start : start + size])
        start, i = start + size, i + 1
    if length <= window:
        expected = [signal]
    else:
        starts = list(range(0, length - window + 1, hop))
        if starts[-1] + window < length:
            starts.append(length - window)
        expected = [signal[s : s + window] for s in starts]
    windows = list(iter_windows(iter(blocks), window, hop))
    assert len(windows) == len(expected)
    for got, want in zip(windows, expected):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("window,hop", [(0, 1), (10, 0), (10, 11)])
def test_bad_window_parameters(window, hop):
    with pytest.raises(ValueError, match="1 <= hop <= window"):
        list(iter_windows([np.zeros(5, dtype=np.float32)], window, hop))
