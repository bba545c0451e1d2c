"""Exported cutouts on disk for the ``onnxruntime`` runtime: one ONNX file per (model, class subset, gains input).

Files are named by a sha256 over the parent model's digest (:func:`vision.io.model_digest`), the classes and
the variant, written atomically, reused across processes, and evicted least recently used beyond ``max_bytes``.
A file that does not load, or whose metadata does not match its key, is exported again.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from vision import SeqParModel
from vision.io import model_digest
from vision.onnx import FORMAT, OnnxSeqPar, export_classes

DEFAULT_MAX_BYTES = 2 * 2**30


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/crossmodal/onnx`` (``~/.cache/crossmodal/onnx`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossmodal" / "onnx"


class OnnxFiles:
    """``session(classes, gains)``: an onnxruntime session of the cutout, exported once and kept on disk."""

    def __init__(self, model: SeqParModel, cache_dir: str | os.PathLike | None = None, max_bytes: int | None = None,
                 threads: int | None = None):
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral)
                                      or max_bytes < 1):
            raise ValueError(f"onnx cache max_bytes must be a positive integer, got {max_bytes!r}")
        self.model = model
        self.directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
        self.threads = threads
        self._digest: str | None = None
        self._lock = threading.Lock()
        self.export_seconds: list[float] = []

    @property
    def digest(self) -> str:
        """The parent model's digest (computed once: the model is taken as frozen)."""
        with self._lock:
            if self._digest is None:
                self._digest = model_digest(self.model)
            return self._digest

    def path(self, classes: Sequence[int], gains: bool) -> Path:
        key = f"{FORMAT}:{self.digest}:{','.join(map(str, classes))}:{'gains' if gains else 'plain'}"
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.onnx"

    def session(self, classes: Sequence[int], gains: bool) -> OnnxSeqPar:
        """The session for the cutout to ``classes`` (exported now unless a matching file is on disk)."""
        classes = tuple(classes)
        path = self.path(classes, gains)
        if path.is_file():
            session = self._load(path, classes, gains)
            if session is not None:
                os.utime(path)  # recently used
                return session
        start = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        export_classes(self.model, classes, path, gains=gains, parent_digest=self.digest)
        with self._lock:
            self.export_seconds.append(time.perf_counter() - start)
        self.evict(keep=path)
        session = self._load(path, classes, gains)
        if session is None:
            raise RuntimeError(f"{path}: the file just exported does not load in onnxruntime")
        return session

    def _load(self, path: Path, classes: tuple[int, ...], gains: bool) -> OnnxSeqPar | None:
        try:
            session = OnnxSeqPar(path, threads=self.threads)
        except Exception:  # noqa: BLE001 - a truncated or foreign file is exported again
            return None
        origin = session.metadata["provenance"].get("cutout_of", {}).get("digest")
        if session.class_ids != classes or session.has_gains != gains or origin != self.digest:
            return None
        return session

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Delete the least recently used files until the folder holds at most ``max_bytes`` (never ``keep``)."""
        files = []
        for path in self.directory.glob("*.onnx"):
            try:
                info = path.stat()
            except FileNotFoundError:  # another process evicted it
                continue
            files.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in files)
        removed = []
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed.append(path)
        return removed
