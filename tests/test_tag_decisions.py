"""mappings.tag_decisions: the pure tag -> guide decision, its table's JSON round-trip, and that it imports no torch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mappings.guide import Guide
from mappings.tag_decisions import (
    LabelMatch,
    TagDecisionTable,
    TagLabel,
    TagRules,
    decide,
    gain_of,
)

REPO = Path(__file__).resolve().parents[1]
CATS, DOGS = (281, 282, 283, 284, 285), tuple(range(151, 269))
LABELS = {  # a small ontology: Pets > Cat > Meow, Pets > Dog; Fowl > Duck, Goose; Crow (no class); Music generic
    "pets": TagLabel("pets", "Domestic animals, pets", (), True, (LabelMatch(CATS + DOGS, 1.0),)),
    "cat": TagLabel("cat", "Cat", (), False, (LabelMatch(CATS, 1.0),)),
    "meow": TagLabel("meow", "Meow", ("cat",), False, (LabelMatch(CATS, 1.0),)),
    "dog": TagLabel("dog", "Dog", (), False, (LabelMatch(DOGS, 1.0),)),
    "bird": TagLabel("bird", "Bird", (), False, (LabelMatch((7, 8, 97, 98, 99), 1.0),)),
    "crow": TagLabel("crow", "Crow", ("bird",), False, ()),
    "fowl": TagLabel("fowl", "Fowl", (), False, ()),
    "duck": TagLabel("duck", "Duck", ("fowl",), False, (LabelMatch((97, 98), 1.0),)),
    "goose": TagLabel("goose", "Goose", ("fowl",), False, (LabelMatch((99,), 0.5, gain=2.5),)),
    "speech": TagLabel("speech", "Speech", (), False, ()),
    "music": TagLabel("music", "Music", (), True, ()),
}
RULES = TagRules()


def test_a_specific_label_wins_and_generic_ones_are_skipped():
    d = decide(LABELS, RULES, [("pets", 0.9), ("cat", 0.8), ("meow", 0.4)])
    assert (d.classes, d.reason, d.used) == (CATS, "", (("meow", 0.4),))
    assert d.gains == tuple((c, gain_of((1.0, 4.0), 0.4, 1.0)) for c in CATS)
    assert "skipped 'Domestic animals, pets': a generic AudioSet category" in d.notes
    assert "skipped 'Cat': more specific 'Meow' present" in d.notes
    # a descendant below min_score does not push its ancestor out
    assert decide(LABELS, RULES, [("cat", 0.8), ("meow", 0.2)]).used == (("cat", 0.8),)


def test_abstain_reasons():
    weak = decide(LABELS, RULES, [("music", 0.9), ("cat", 0.29)])
    assert (weak.classes, weak.gains, weak.reason, weak.confident) == ((), (), "weak", False)
    crow = decide(LABELS, RULES, [("bird", 0.9), ("crow", 0.35)])  # Crow pushes Bird out, and maps to nothing
    assert crow.reason == "no ImageNet counterpart"
    assert decide(LABELS, RULES, [("speech", 0.5), ("dog", 0.99)]).reason == "no ImageNet counterpart"  # sure, x2
    assert decide(LABELS, RULES, [("speech", 0.49), ("dog", 0.6)]).classes == DOGS  # not sure: no veto
    assert decide(LABELS, RULES, [("speech", 0.5), ("dog", 1.0)]).classes == DOGS  # outscored by a factor 2
    assert decide(LABELS, RULES, [("cat", 0.5), ("dog", 0.26)]).reason == "contradictory"
    assert decide(LABELS, RULES, [("cat", 0.5), ("dog", 0.25)]).classes == CATS  # 2 x 0.25 is not above 0.5


def test_the_same_family_is_kept_together_with_its_gains():
    d = decide(LABELS, RULES, [("duck", 0.9), ("goose", 0.5)])  # close and disjoint, but both Fowl
    assert d.classes == (97, 98, 99) and d.used == (("duck", 0.9), ("goose", 0.5))
    assert decide(LABELS, RULES, [("duck", 0.9), ("goose", 0.4)]).classes == (97, 98)  # outscored by 2x
    assert dict(d.gains) == {97: 1 + 3 * 0.9, 98: 1 + 3 * 0.9, 99: 2.5}  # Goose: its curated gain
    overlapping = decide(LABELS, RULES, [("duck", 0.9), ("bird", 0.5)])  # Bird shares Duck's classes
    assert overlapping.classes == (7, 8, 97, 98, 99) and dict(overlapping.gains)[97] == 1 + 3 * 0.9


def test_top_k_unknown_labels_and_bad_scores():
    rules = TagRules(top_k=2)
    d = decide(LABELS, rules, [("dog", 0.1), ("nope", 0.9), ("cat", 0.8)])  # dog is the 3rd best: left out
    assert d.classes == CATS and "ignored 'nope': not a label of the table" in d.notes
    with pytest.raises(ValueError, match=r"tag 'cat': score must be a finite number in \[0, 1\], got nan"):
        decide(LABELS, RULES, [("dog", 0.5), ("cat", float("nan"))])
    for bad, message in [({"top_k": 0}, "top_k"), ({"margin": 0.5}, "margin"), ({"sure_score": 2}, "sure_score"),
                         ({"gain_range": (2.0, 1.0)}, "gain_range")]:
        with pytest.raises(ValueError, match=message):
            TagRules(**bad)


def test_table_round_trips_through_json_and_decides_score_vectors(tmp_path):
    table = TagDecisionTable(list(LABELS.values()), TagRules(top_k=3, margin=1.5), wnids=("n01", "n02"),
                             tagger="toy")
    path = table.save(tmp_path / "table.json")
    again = TagDecisionTable.load(path)
    assert again == table and again.to_json() == table.to_json() == path.read_text(encoding="utf-8")
    assert again.by_mid["goose"] == LABELS["goose"] and again.rules == table.rules and again.wnids == ("n01", "n02")
    assert json.loads(path.read_text())["reasons"] == ["silent", "weak", "contradictory", "no ImageNet counterpart"]
    scores = np.zeros(len(LABELS))
    scores[[list(LABELS).index("meow"), list(LABELS).index("dog")]] = 0.7, 0.2
    assert again.decide_scores(scores) == decide(LABELS, table.rules, [("meow", 0.7), ("dog", 0.2), ("pets", 0.0)])
    with pytest.raises(ValueError, match="expected 11 scores"):
        again.decide_scores(scores[:3])
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="bad.json: expected format 'crossmodal-tag-decisions' version 1"):
        TagDecisionTable.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="not found"):
        TagDecisionTable.load(tmp_path / "none.json")
    with pytest.raises(ValueError, match="each label mid once"):
        TagDecisionTable([LABELS["cat"], LABELS["cat"]])


def test_guide_reasons_are_checked():
    assert Guide.abstain(["x"], reason="weak").to_dict()["reason"] == "weak"
    assert Guide.abstain(reason="silent").explain().startswith("unguided (confident=False): nothing was heard")
    with pytest.raises(ValueError, match="guide reason must be one of"):
        Guide.abstain(reason="tired")
    with pytest.raises(ValueError, match="guide reason must be one of"):
        Guide((1,), reason="weak")
    assert Guide.abstain(reason="weak") != Guide.abstain(reason="contradictory")


def test_tag_decisions_import_neither_torch_nor_the_mapper():
    code = ("import sys, json, mappings.tag_decisions, mappings; mappings.Guide, mappings.TagDecisionTable; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'sentence_transformers', 'timm', 'transformers', 'yaml', 'mappings'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["mappings", "mappings.guide", "mappings.tag_decisions"]


def test_the_package_exports_load_lazily():
    import mappings

    assert mappings.CueMapper.__module__ == "mappings.mapper" and "CueMapper" in dir(mappings)
    assert set(mappings.__all__) == set(mappings._EXPORTS)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        mappings.nothing  # noqa: B018
