"""A bounded, thread-safe LRU cache of cutouts (one per class subset), with build-time accounting.

Cached cutouts share the classifier model's trunk (an inference-only view) and follow the model: when
``model.to(device)`` or ``model.half()`` changed where or in which dtype it runs, a cached cutout is
rebuilt from the model on its next use. With ``files`` (:class:`crossmodal.onnx_files.OnnxFiles`), a cached
cutout also holds its onnxruntime sessions (:meth:`CutoutCache.session`), dropped with it.
"""

from __future__ import annotations

import numbers
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from vision import SeqParModel
from vision.cost import BranchCosts, Cost

Placement = tuple[torch.device, torch.dtype]


def placement(model: torch.nn.Module) -> Placement:
    """Where and in which dtype a model's weights are."""
    weight = next(model.parameters())
    return weight.device, weight.dtype


@dataclass(frozen=True)
class CachedCutout:
    """A cutout of the classifier's model, its cost per image and how long building it (with its cost) took."""

    classes: tuple[int, ...]
    model: SeqParModel
    cost: Cost
    build_seconds: float
    placement: Placement  # the parent's when the cutout was built
    nbytes: int  # memory of its own weights and buffers (the shared trunk excluded)
    sessions: dict[bool, Any] = field(default_factory=dict, compare=False, repr=False)  # gains input -> session


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    max_size: int
    nbytes: int
    max_bytes: int
    build_seconds: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "size": self.size, "max_size": self.max_size,
                "nbytes": self.nbytes, "max_bytes": self.max_bytes, "build_seconds": list(self.build_seconds)}


DEFAULT_MAX_BYTES = 512 * 2**20


def own_bytes(cutout: SeqParModel) -> int:
    """Bytes of a shared-trunk cutout's own tensors: its branch levels and index buffers."""
    return sum(t.numel() * t.element_size() for t in (*cutout.levels.parameters(), *cutout.levels.buffers(),
                                                      cutout.output_order, cutout.path_nodes))


class CutoutCache:
    """``get(classes)`` returns the cutout for that subset, building it once (other threads wait for it).

    Cutouts share the model's trunk (``share_trunk=True``: an inference-only view), so a cached cutout
    costs only its branches' memory. The least recently used subsets are dropped beyond ``max_size``
    cutouts or ``max_bytes`` of their weights (default 512 MiB; the newest cutout always stays).
    """

    def __init__(self, model: SeqParModel, max_size: int = 32, max_bytes: int | None = None, files: Any = None):
        for name, value in (("max_size", max_size), ("max_bytes", max_bytes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.model = model
        self.max_size = int(max_size)
        self.max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
        self.costs = BranchCosts.of(model)
        self.files = files
        self._session_lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, ...], Future] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = 0
        self._build_seconds: deque[float] = deque(maxlen=1000)  # the latest builds

    def get(self, classes: Sequence[int]) -> tuple[CachedCutout, bool]:
        """(the cutout for ``classes``, whether it came from the cache)."""
        key = tuple(classes)
        where = placement(self.model)
        with self._lock:
            future = self._entries.get(key)
            if future is not None and future.done() and future.exception() is None \
                    and future.result().placement != where:
                del self._entries[key]  # the model moved or changed dtype since: rebuild from it
                future = None
            hit = future is not None
            if hit:
                self._entries.move_to_end(key)
                self._hits += 1
            else:
                future = Future()
                self._entries[key] = future
                self._misses += 1
        if hit:
            return future.result(), True
        try:
            entry = self._build(key)
        except BaseException as err:
            with self._lock:
                if self._entries.get(key) is future:
                    del self._entries[key]
            future.set_exception(err)
            raise
        future.set_result(entry)
        with self._lock:  # evict only after a successful build: a bad request never drops a good cutout
            while len(self._entries) > 1 and (len(self._entries) > self.max_size or self._nbytes() > self.max_bytes):
                oldest = next(iter(self._entries))
                self._entries.pop(key if oldest == key else oldest)  # the newest stays
        return entry, False

    def session(self, entry: CachedCutout, gains: bool) -> Any:
        """The onnxruntime session of a cached cutout (with or without a gains input), made once per entry."""
        if self.files is None:
            raise ValueError("this cutout cache has no ONNX files (GuidedClassifier(..., runtime='onnxruntime'))")
        with self._session_lock:
            if gains not in entry.sessions:
                entry.sessions[gains] = self.files.session(entry.classes, gains)
            return entry.sessions[gains]

    def _nbytes(self) -> int:
        """Bytes held by the built entries (call with the lock held)."""
        return sum(f.result().nbytes for f in self._entries.values() if f.done() and f.exception() is None)

    def _build(self, key: tuple[int, ...]) -> CachedCutout:
        start = time.perf_counter()
        where = placement(self.model)
        cutout = self.model.cutout(list(key), share_trunk=True)
        cost = self.costs.cost(cutout)
        seconds = time.perf_counter() - start
        with self._lock:
            self._build_seconds.append(seconds)
        return CachedCutout(key, cutout, cost, seconds, where, own_bytes(cutout))

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries), self.max_size, self._nbytes(),
                              self.max_bytes, tuple(self._build_seconds))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
