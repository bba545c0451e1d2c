"""Cold start: cues that curated entries, WordNet or the AudioSet ontology resolve load no sentence model,
free text runs the default model without importing sentence-transformers, and the packaged class-text
embeddings are what the model computes now."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mappings import embeddings
from mappings.embeddings import DEFAULT_MODEL, PACKAGED_DIR, EmbeddingIndex, TextEncoder
from mappings.mapper import CueMapper

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT.parent / "shared" / "data" / "imagenet-samples" / "n02123394_Persian_cat.JPEG"
CUES = {"siren": [407, 555, 734], "goldfish": [1], "meow": [281, 282, 283, 284, 285]}
# modules that cost seconds to import and that no cue of the default model needs
HEAVY = ("sentence_transformers", "transformers", "timm", "torchvision", "torch._dynamo", "sympy")

CHILD = """
import json, sys
from crossmodal import GuidedClassifier
from mappings import CueMapper
clf = GuidedClassifier.from_pretrained("default")
out = {}
for text in %(cues)r:
    guide = clf.guide(text=text)
    result = clf.predict(%(image)r, guide, top_k=3)
    out[text] = {"classes": list(guide.classes), "methods": [m.method for m in guide.matches],
                 "top": [p.class_id for p in result.predictions]}
out["meow audio"] = list(clf.cues.mapper.map([("Meow", 0.9), ("Purr", 0.5)]).classes)
heavy = sorted(m for m in %(heavy)r if m in sys.modules)
clf.cues.mapper.index  # packaged embeddings: still no sentence model
eager = {text: list(clf.cues.mapper.map(text).classes) for text in %(cues)r}
after_index = sorted(m for m in %(heavy)r if m in sys.modules)
loaded = clf.cues.mapper.encoder._model is not None
print(json.dumps({"out": out, "heavy": heavy, "eager": eager, "after_index": after_index, "loaded": loaded}))
"""


def _child(code: str, tmp_path: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CROSSMODAL_CACHE": str(tmp_path / "empty-cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_curated_and_wordnet_cues_load_no_sentence_model(tmp_path):
    if not IMAGE.is_file():
        pytest.skip(f"shared photo {IMAGE} not found")
    got = _child(CHILD % {"cues": list(CUES), "image": str(IMAGE), "heavy": HEAVY}, tmp_path)
    assert got["heavy"] == [] and got["after_index"] == [] and got["loaded"] is False
    assert {text: got["out"][text]["classes"] for text in CUES} == CUES
    assert got["out"]["siren"]["methods"] == ["override"] and got["out"]["goldfish"]["methods"] == ["wordnet"]
    assert got["out"]["meow audio"] == CUES["meow"]
    assert got["eager"] == CUES  # the same answers once the embedding index is built
    assert got["out"]["meow"]["top"][0] == 283  # the Persian cat photo, guided by the cats
    assert not (tmp_path / "empty-cache").exists()  # nothing embedded, nothing written


def test_free_text_runs_the_default_model_without_sentence_transformers(tmp_path):
    code = ("import sys; from mappings import CueMapper; m = CueMapper.default(); g = m.map('something shiny');"
            f"import json; print(json.dumps({{'heavy': sorted(m for m in {HEAVY!r} "
            "if m in sys.modules), 'model': type(m.encoder.model).__name__}))")
    assert _child(code, tmp_path) == {"heavy": [], "model": "BertSentenceEncoder"}


def test_packaged_embeddings_equal_what_the_model_computes(tmp_path):
    torch.set_num_threads(1)  # as scripts/make_text_embeddings.py
    encoder = TextEncoder(model_name=DEFAULT_MODEL, cache_dir=tmp_path)
    texts = CueMapper(encoder=encoder).embedded_texts()
    assert sorted(p.name for p in PACKAGED_DIR.glob("*.safetensors")) == sorted(encoder.cache_path(t).name
                                                                                for t in texts)
    for group in texts:
        shipped = encoder.packaged(group)
        assert shipped is not None and shipped.shape == (len(group), 384)
        torch.testing.assert_close(shipped, encoder.encode(group), rtol=0, atol=1e-6)


def test_changed_texts_or_model_miss_the_packaged_embeddings(tmp_path, monkeypatch):
    encoder = TextEncoder(model_name=DEFAULT_MODEL, cache_dir=tmp_path)
    classes, _ = CueMapper(encoder=encoder).embedded_texts()
    assert encoder.packaged(classes) is not None
    assert encoder.packaged(classes[:-1] + [classes[-1] + " "]) is None
    assert TextEncoder(model_name="other/model", cache_dir=tmp_path).packaged(classes) is None
    # a file under the right name but written for other texts or another model is refused by its metadata
    other = TextEncoder(model_name="other/model", cache_dir=tmp_path)
    monkeypatch.setattr(embeddings, "PACKAGED_DIR", tmp_path / "pkg")
    (tmp_path / "pkg").mkdir()
    shutil.copy(encoder.cache_path(classes, PACKAGED_DIR), other.cache_path(classes, tmp_path / "pkg"))
    assert other.packaged(classes) is None


def test_search_equals_semantic_search():
    from sentence_transformers.util import semantic_search

    gen = torch.Generator().manual_seed(0)
    corpus, queries = torch.randn(300, 16, generator=gen), torch.randn(250, 16, generator=gen)  # 3 query chunks
    index = EmbeddingIndex(list(range(300)), [f"t{i}" for i in range(300)], corpus)
    ours = index.search(queries, top_k=4)
    ref = semantic_search(queries, corpus, top_k=4)
    assert [[(h.key, h.score) for h in q] for q in ours] == [[(h["corpus_id"], h["score"]) for h in q] for q in ref]
