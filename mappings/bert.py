"""Sentence embeddings from a local BERT sentence-transformers directory in plain PyTorch.

``BertSentenceEncoder`` computes what ``SentenceTransformer(dir).encode`` computes for such a directory
(BertModel, mean or CLS pooling, an optional Normalize module), tokenising with the ``tokenizers`` package
and reading model.safetensors, without importing sentence-transformers or transformers.
``native_config`` decides which directories it serves; any other model goes through sentence-transformers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu, "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"), "relu": F.relu}
# sentence_bert_config.json entries (older and newer saves) that describe what this module computes
_PLAIN_TRANSFORMER = {"do_lower_case": False, "transformer_task": "feature-extraction",
                      "module_output_name": "token_embeddings",
                      "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}}
_LEGACY_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


@dataclass(frozen=True)
class BertEncoderConfig:
    """What a sentence-transformers directory says about its BERT model, pooling and input length."""

    path: Path  # the folder of config.json, tokenizer.json and model.safetensors
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    max_position_embeddings: int
    type_vocab_size: int
    pooling: str  # "mean" or "cls"
    normalize: bool  # modules.json ends with Normalize
    max_seq_length: int  # tokens, [CLS] and [SEP] included; longer texts are truncated


def _json(path: Path) -> Any:
    """The parsed file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _pooling_mode(config: dict) -> str | None:
    """The pooling of a Pooling config (``pooling_mode`` or the older booleans): "mean", "cls" or None (other)."""
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        on = [key for key, value in config.items() if key.startswith("pooling_mode_") and value]
        modes = [_LEGACY_POOLING.get(key) for key in on] or ["mean"]
    return modes[0] if len(modes) == 1 and modes[0] in ("mean", "cls") else None


def _plain_bert_tokenizer(tokenizer_json: dict, tokenizer_config: dict) -> bool:
    """Whether transformers would use tokenizer.json unchanged: BertTokenizerFast rewrites its normaliser
    when tokenizer_config.json asks for other lower-casing, accent or Chinese-character handling."""
    if tokenizer_config.get("tokenizer_class", "BertTokenizerFast") not in ("BertTokenizer", "BertTokenizerFast"):
        return False
    normalizer = tokenizer_json.get("normalizer") or {}
    wanted = {"lowercase": tokenizer_config.get("do_lower_case", True),
              "strip_accents": tokenizer_config.get("strip_accents"),
              "handle_chinese_chars": tokenizer_config.get("tokenize_chinese_chars", True)}
    return all(normalizer.get(key, value) == value for key, value in wanted.items())


def native_config(model_dir: str | Path) -> BertEncoderConfig | None:
    """The configuration of a local sentence-transformers directory that :class:`BertSentenceEncoder`
    encodes exactly, else None: another architecture, pooling or tokenizer setting, a default prompt,
    weights only in pytorch_model.bin, or no such directory (a hub id). Those load through sentence-transformers.

    Why a native path: importing sentence-transformers costs ~4.3 s on top of torch (it pulls transformers,
    torchvision, torch._dynamo, scikit-learn), while loading all-MiniLM-L6-v2 takes 0.1 s, encoding a cue
    0.04 s and ``import tokenizers`` 4 ms: every cold start with a free-text cue paid for the imports.
    """
    root = Path(model_dir)
    modules = _json(root / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        return None
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    bert = root / modules[0].get("path", "")
    config = _json(bert / "config.json") or {}
    options = dict(_json(bert / "sentence_bert_config.json") or {})
    tokenizer_config = _json(bert / "tokenizer_config.json") or {}
    tokenizer_json = _json(bert / "tokenizer.json") or {}
    pooling = _pooling_mode(_json(root / modules[1].get("path", "") / "config.json") or {})
    max_seq_length = options.pop("max_seq_length", None) or tokenizer_config.get("model_max_length")
    sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "type_vocab_size")
    supported = (
        config.get("model_type") == "bert" and not config.get("is_decoder")
        and config.get("position_embedding_type", "absolute") == "absolute"
        and config.get("hidden_act", "gelu") in _ACTIVATIONS
        and all(isinstance(config.get(key), int) for key in sizes)
        and config["hidden_size"] % config["num_attention_heads"] == 0
        and pooling is not None
        and not (_json(root / "config_sentence_transformers.json") or {}).get("default_prompt_name")
        and all(_PLAIN_TRANSFORMER.get(key, ...) == value for key, value in options.items())
        and tokenizer_json and _plain_bert_tokenizer(tokenizer_json, tokenizer_config)
        and ((bert / "model.safetensors").is_file() or not (bert / "pytorch_model.bin").is_file())
    )
    if not supported:
        return None
    return BertEncoderConfig(
        path=bert, **{key: config[key] for key in sizes}, hidden_act=config.get("hidden_act", "gelu"),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)), pooling=pooling, normalize=len(modules) == 3,
        max_seq_length=min(int(max_seq_length or config["max_position_embeddings"]), config["max_position_embeddings"]))


def _weight_shapes(config: BertEncoderConfig) -> dict[str, tuple[int, ...]]:
    """The BertModel tensors the encoder uses, by their names in model.safetensors."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {"embeddings.word_embeddings.weight": (config.vocab_size, h),
              "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
              "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    linears = {"attention.self.query": (h, h), "attention.self.key": (h, h), "attention.self.value": (h, h),
               "attention.output.dense": (h, h), "intermediate.dense": (i, h), "output.dense": (h, i)}
    for n in range(config.num_hidden_layers):
        layer = f"encoder.layer.{n}"
        for name, (rows, cols) in linears.items():
            shapes[f"{layer}.{name}.weight"], shapes[f"{layer}.{name}.bias"] = (rows, cols), (rows,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{layer}.{name}.weight"] = shapes[f"{layer}.{name}.bias"] = (h,)
    return shapes


def _load_weights(config: BertEncoderConfig) -> dict[str, torch.Tensor]:
    """float32 tensors by name; names may carry the ``bert.`` prefix of a task model's checkpoint."""
    file = config.path / "model.safetensors"
    if not file.is_file():
        raise FileNotFoundError(f"the sentence model's weights file {file} is missing")
    weights = {}
    try:
        with safe_open(str(file), "pt") as f:
            stored = set(f.keys())
            for key, shape in _weight_shapes(config).items():
                name = key if key in stored else f"bert.{key}"
                if name not in stored:
                    raise ValueError(f"the sentence model's weights file {file} has no tensor {key!r}")
                tensor = f.get_tensor(name)
                if tuple(tensor.shape) != shape:
                    raise ValueError(f"the sentence model's weights file {file}: {key!r} has shape "
                                     f"{tuple(tensor.shape)}, config.json implies {shape}")
                weights[key] = tensor.float()
    except SafetensorError as err:
        raise ValueError(f"the sentence model's weights file {file} is not a readable safetensors file: {err}") \
            from err
    return weights


def _load_tokenizer(config: BertEncoderConfig) -> Tokenizer:
    """tokenizer.json, truncating to max_seq_length and padding to the longest text of a batch, as the
    transformers tokenizer that sentence-transformers calls does."""
    file = config.path / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as err:  # tokenizers raises a plain Exception for a file it cannot parse
        raise ValueError(f"the sentence model's tokenizer file {file} is not readable: {err}") from err
    tokenizer.enable_truncation(max_length=config.max_seq_length)
    tokenizer.enable_padding()  # pad id 0: padded positions are masked out of attention and pooling
    return tokenizer


class BertSentenceEncoder:
    """``SentenceTransformer(dir).encode`` for a directory :func:`native_config` accepts, on the CPU.

    Nothing changes after loading, so one encoder serves many threads.
    """

    def __init__(self, config: BertEncoderConfig):
        self.config = config
        self.tokenizer = _load_tokenizer(config)
        self.weights = _load_weights(config)

    def encode(self, sentences: Sequence[str], *, batch_size: int = 32, show_progress_bar: bool = False,
               normalize_embeddings: bool = False) -> torch.Tensor:
        """(len(sentences), hidden_size) float32 embeddings; batches of similar length, as sentence-transformers."""
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        starts = range(0, len(order), batch_size)
        if show_progress_bar:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="Batches")
        with torch.inference_mode():
            out = torch.empty(len(sentences), self.config.hidden_size)
            for start in starts:
                rows = order[start:start + batch_size]
                out[rows] = self._embed([sentences[i] for i in rows])
            return F.normalize(out, p=2, dim=1) if normalize_embeddings else out

    def _embed(self, texts: list[str]) -> torch.Tensor:
        """One padded batch: pooled (and, with a Normalize module, unit) sentence embeddings."""
        encodings = self.tokenizer.encode_batch(texts)
        ids, types, mask = (torch.tensor([getattr(e, field) for e in encodings])
                            for field in ("ids", "type_ids", "attention_mask"))
        tokens = self._forward(ids, types, mask.bool())
        if self.config.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1) if self.config.normalize else pooled

    def _forward(self, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """BertModel's last hidden state (batch, tokens, hidden) for a right-padded batch."""
        c, w = self.config, self.weights

        def linear(x: torch.Tensor, name: str) -> torch.Tensor:
            return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

        def norm(x: torch.Tensor, name: str) -> torch.Tensor:
            return F.layer_norm(x, (c.hidden_size,), w[f"{name}.weight"], w[f"{name}.bias"], c.layer_norm_eps)

        x = F.embedding(ids, w["embeddings.word_embeddings.weight"]) \
            + F.embedding(types, w["embeddings.token_type_embeddings.weight"])
        x = norm(x + w["embeddings.position_embeddings.weight"][:ids.shape[1]], "embeddings.LayerNorm")
        heads = (c.num_attention_heads, c.hidden_size // c.num_attention_heads)
        keep = mask[:, None, None, :]  # keys that are real tokens, for every head and query
        for n in range(c.num_hidden_layers):
            layer = f"encoder.layer.{n}"
            q, k, v = (linear(x, f"{layer}.attention.self.{name}").unflatten(-1, heads).transpose(1, 2)
                       for name in ("query", "key", "value"))
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).flatten(2)
            x = norm(linear(attended, f"{layer}.attention.output.dense") + x, f"{layer}.attention.output.LayerNorm")
            hidden = _ACTIVATIONS[c.hidden_act](linear(x, f"{layer}.intermediate.dense"))
            x = norm(linear(hidden, f"{layer}.output.dense") + x, f"{layer}.output.LayerNorm")
        return x
