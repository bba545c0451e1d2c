"""Audio cues through the mapper equal the torch-free table path; the table CLI; the benchmark's verdicts on the
shared clips (skipped without shared data)."""

import numpy as np
import pytest

from audio import AudioTagger, Cue
from benchmarks.audio_cues import TRUTH, load_truth, score_clips, totals, verdict
from mappings import Guide
from mappings.tag_decisions import TagDecisionTable
from mappings.tag_table import build_table, get_args_parser, main, tagger_labels
from xmcommon.cli import EXIT_BAD_INPUT


@pytest.fixture(scope="module")
def tagger():
    return AudioTagger.from_pretrained("yamnet")


@pytest.fixture(scope="module")
def table(mapper, tagger):
    return build_table(mapper, tagger_labels("yamnet"), tagger="yamnet")


def cue_of(tagger, scores: np.ndarray, top_k: int) -> Cue:
    """The cue the tagger makes from pooled ``scores`` (its ranking: ties go to the lower index)."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    return Cue(tuple((tagger.labels[i], float(scores[i])) for i in order), "audio", tuple(tagger.mids[i] for i in order))


def same(guide: Guide, decision) -> bool:
    return (guide.classes, guide.class_gains(), guide.reason) == (decision.classes, dict(decision.gains),
                                                                  decision.reason)


def test_the_table_holds_the_taggers_labels_as_the_mapper_resolves_them(mapper, tagger, table):
    assert tagger_labels("yamnet") == tuple(zip(tagger.mids, tagger.labels))
    assert [label.mid for label in table.labels] == list(tagger.mids) and table.rules == mapper.config.tag_rules
    by_name = {label.name: label for label in table.labels}
    assert by_name["Meow"].classes == {281, 282, 283, 284, 285} and by_name["Meow"].ancestors == ("/m/01yrx",)
    assert by_name["Animal"].generic and not by_name["Animal"].matches
    assert by_name["Tap"].matches == ()  # Door or any impact: one parent maps to nothing
    assert by_name["Bleat"].classes == {348, 350}  # Sheep and Goat both map
    assert by_name["Zipper (clothing)"].matches == ()  # no embedding matches for tags (a cardigan makes no sound)
    assert by_name["Train horn"].classes == {466, 547, 820}  # through its parent Train, not the French horn
    assert by_name["Toilet flush"].classes == {861}  # curated


def test_mapper_and_table_decide_synthetic_scores_alike(mapper, tagger, table):
    rng = np.random.default_rng(0)
    index = {mid: i for i, mid in enumerate(tagger.mids)}
    mapped = [i for i, label in enumerate(table.labels) if label.classes]
    decided = set()
    for trial in range(300):  # background noise, a few loud labels (mostly mapped ones), sometimes their ancestors
        scores = rng.uniform(0, 0.05, len(tagger.labels))
        loud = rng.choice(mapped, size=rng.integers(1, 4)).tolist() + rng.integers(len(scores), size=1).tolist()
        for i in loud:
            scores[i] = rng.uniform(0.1, 1.0)
            for ancestor in table.labels[i].ancestors[: rng.integers(0, 2)]:
                if ancestor in index:  # some AudioSet nodes are no YAMNet label
                    scores[index[ancestor]] = rng.uniform(0.1, 1.0)
        scores = scores.astype(np.float32)
        decision = table.decide_scores(scores)
        assert same(mapper.map(cue_of(tagger, scores, mapper.config.tag_top_k)), decision), trial
        decided.add(decision.reason)
    assert decided == {"", "weak", "contradictory", "no ImageNet counterpart"}  # every branch was taken


def test_tag_table_cli_writes_the_table(mapper, table, cache_dir, tmp_path, capsys):
    from mappings.tag_table import cli

    out = tmp_path / "table.json"
    result = main(get_args_parser().parse_args(["--audio-model", "yamnet", "--out", str(out),
                                                "--cache-dir", str(cache_dir)]))
    assert TagDecisionTable.load(out) == table
    assert (result["labels"], result["mapped"]) == (521, sum(bool(label.classes) for label in table.labels))
    assert cli(["--audio-model", str(tmp_path), "--out", str(out)]) == EXIT_BAD_INPUT
    assert "labels.tsv not found" in capsys.readouterr().err


def test_verdicts():
    cats = frozenset({281, 282})
    assert verdict(Guide.for_classes([281, 282, 5]), cats) == "right"
    assert verdict(Guide.for_classes([281]), cats) == "wrong"  # the cutout may drop the source
    assert verdict(Guide.abstain(reason="weak"), cats) == "missed"
    assert verdict(Guide.abstain(reason="weak"), None) == "right abstain"
    assert verdict(Guide.for_classes([281]), None) == "wrong"
    summary = totals(["right", "wrong", "right abstain"], {"a": cats, "b": cats, "c": None})
    assert summary["rates"] == {"right_of_sourced": 0.5, "wrong_of_all": 1 / 3, "right_abstain_of_sourceless": 1.0}
    assert summary["meets_bar"] == {"right_of_sourced": True, "wrong_of_all": False,
                                    "right_abstain_of_sourceless": True}


def test_shared_clips_meet_the_bar_and_the_table_agrees(shared_data, mapper, tagger, table):
    truth = load_truth(TRUTH, mapper.hierarchy)
    assert len(truth) == 24 and sum(v is None for v in truth.values()) == 6
    rows = score_clips(tagger, mapper, shared_data / "audio", truth)
    summary = totals((row["verdict"] for row in rows), truth)
    assert summary["counts"]["wrong"] == 0 or all(summary["meets_bar"].values()), summary
    assert all(summary["meets_bar"].values()), summary
    for row in rows:  # the torch-free path on the same pooled scores gives the same guide
        decision = table.decide_scores(tagger.scores(shared_data / "audio" / row["clip"]))
        assert (list(decision.classes), decision.reason) == (row["classes"], row["reason"]), row["clip"]

