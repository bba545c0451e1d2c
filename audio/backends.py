"""The audio tagger interface every backend implements, and the registry that resolves model names to backends.

A backend is one module with an `AudioTagger` subclass plus one `register_backend` entry (see the end of this
file). The subclass declares its sampling rate, window, default hop and label table and scores a batch of
windows; windowing, silence handling, pooling, top-k and cues are written once, here.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np

from audio.cue import Cue
from audio.loading import DEFAULT_BLOCK_SECONDS, prepare_waveform, stream_audio
from audio.windows import POOLINGS, pool_scores, sound_windows
from xmcommon.threads import MODEL_BUILD_LOCK


@dataclass(frozen=True)
class Tag:
    """One predicted label: name, score in [0, 1], index in the model's labels, AudioSet mid (or None)."""

    label: str
    score: float
    index: int
    mid: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def _batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class AudioTagger(ABC):
    """Tags sounds with labels and scores. `AudioTagger.from_pretrained(name_or_path)` picks the backend.

    Subclasses provide `sampling_rate`, `window_samples`, `labels`, `mids` and `window_scores`, and may change the
    class defaults below: `hop_samples` (default: one window), `default_pooling`, `drop_silence` and
    `batch_size` (windows per forward pass).
    """

    labels: tuple[str, ...]
    mids: tuple[str | None, ...]
    window_samples: int
    default_pooling: str = "max"
    drop_silence: bool = False
    batch_size: int = 4

    @property
    @abstractmethod
    def sampling_rate(self) -> int:
        """The rate (Hz) the model expects; other rates are resampled."""

    @abstractmethod
    def window_scores(self, windows: list[np.ndarray]) -> np.ndarray:
        """Scores (windows, labels) for mono windows at `sampling_rate`, each at most `window_samples` long."""

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **options) -> "AudioTagger":
        """A registered name ("yamnet": the packaged default), a model directory (its backend is told by its
        config.json) or a Hugging Face hub id (AST); `options` go to the backend's loader."""
        return load_tagger(name_or_path, **options)

    @property
    def hop_samples(self) -> int:
        """Default distance between window starts."""
        return self.window_samples

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sampling_rate

    def _windows(
        self, audio, sampling_rate: int | None, hop_seconds: float | None, block_seconds: float, drop_silence: bool
    ) -> Iterator[np.ndarray]:
        if hop_seconds is None:
            hop = self.hop_samples
        elif not 0 < hop_seconds <= self.window_seconds:
            raise ValueError(f"hop_seconds must be in (0, {self.window_seconds:.3f}] (the window), got {hop_seconds}")
        else:
            hop = max(1, round(hop_seconds * self.sampling_rate))
        if isinstance(audio, (str, os.PathLike)):
            if sampling_rate is not None:
                raise ValueError(f"{audio}: sampling_rate is read from the file; pass it only with a waveform")
            blocks = stream_audio(audio, sampling_rate=self.sampling_rate, block_seconds=block_seconds)
        else:
            blocks = [prepare_waveform(audio, sampling_rate, target_rate=self.sampling_rate)]
        return sound_windows(blocks, self.window_samples, hop, drop_silence=drop_silence,
                             sampling_rate=self.sampling_rate)

    def scores(
        self,
        audio,
        *,
        sampling_rate: int | None = None,
        hop_seconds: float | None = None,
        pooling: str | None = None,
        drop_silence: bool | None = None,
        batch_size: int | None = None,
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
    ) -> np.ndarray | None:
        """Pooled scores, one per label, for a file path or a 1-D waveform (then `sampling_rate` is required).

        The audio is cut into windows of `window_seconds` every `hop_seconds` (default: the backend's hop); window
        scores are pooled by "max" or "mean" (default: the backend's). With `drop_silence` (default: the
        backend's), leading and trailing digital silence (`SILENCE_PEAK`) is cut and silent windows are dropped
        before pooling; then audio that is silent throughout gives None. Files are streamed: memory stays bounded.
        """
        pooling = self.default_pooling if pooling is None else pooling
        batch_size = self.batch_size if batch_size is None else batch_size
        drop_silence = self.drop_silence if drop_silence is None else drop_silence
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        windows = self._windows(audio, sampling_rate, hop_seconds, block_seconds, drop_silence)
        return pool_scores((self.window_scores(batch) for batch in _batched(windows, batch_size)), pooling)

    def __call__(self, audio, *, sampling_rate: int | None = None, top_k: int | None = 5, **options) -> list[Tag]:
        """The `top_k` best tags (all labels for None), highest score first (ties: lower index first); no tags
        for silent audio. `options` go to `scores`."""
        if top_k is not None and not 1 <= top_k <= len(self.labels):
            raise ValueError(f"top_k must be in 1..{len(self.labels)} or None, got {top_k}")
        scores = self.scores(audio, sampling_rate=sampling_rate, **options)
        if scores is None:
            return []
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [Tag(self.labels[i], float(scores[i]), int(i), self.mids[i]) for i in order]

    def cue(self, audio, *, sampling_rate: int | None = None, top_k: int = 5, **options) -> Cue | None:
        """The `top_k` tags of `audio` as a Cue (source "audio", with their AudioSet mids), or None when the
        audio is digital silence throughout (nothing was heard). `options` go to `scores`."""
        tags = self(audio, sampling_rate=sampling_rate, top_k=top_k, **options)
        if not tags:
            return None
        return Cue(labels=tuple((tag.label, tag.score) for tag in tags), source="audio",
                   mids=tuple(tag.mid for tag in tags))


Loader = Callable[..., AudioTagger]


@dataclass(frozen=True)
class Backend:
    """How to load one kind of tagger: `loader(name_or_path, **options)` (a callable or "module:attribute"),
    `accepts(config)` for a directory's config.json, `packaged` when the bare name loads a packaged model,
    `hub_ids` for the one backend that takes any other string (a hub id)."""

    name: str
    loader: Loader | str
    accepts: Callable[[Mapping], bool]
    packaged: bool = False
    hub_ids: bool = False

    def load(self, name_or_path, **options) -> AudioTagger:
        """Load with this backend, holding the project's model-build lock (see `xmcommon.threads`)."""
        loader = self.loader
        if isinstance(loader, str):
            module, _, attribute = loader.partition(":")
            loader = importlib.import_module(module)
            for part in attribute.split("."):
                loader = getattr(loader, part)
        with MODEL_BUILD_LOCK:
            return loader(name_or_path, **options)


_BACKENDS: dict[str, Backend] = {}


def register_backend(
    name: str, loader: Loader | str, *, accepts: Callable[[Mapping], bool], packaged: bool = False,
    hub_ids: bool = False,
) -> Backend:
    """Register (or replace) the backend `name`; see `Backend`. Returns the entry."""
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ValueError(f"backend name must be a non-empty string without '/', got {name!r}")
    if hub_ids and any(b.hub_ids for b in _BACKENDS.values() if b.name != name):
        raise ValueError(f"backend {name!r}: another backend already takes hub ids")
    backend = Backend(name, loader, accepts, packaged, hub_ids)
    _BACKENDS[name] = backend
    return backend


def backends() -> tuple[str, ...]:
    """Names of the registered backends."""
    return tuple(_BACKENDS)


def _read_config(directory: Path) -> Mapping:
    path = directory / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    return config if isinstance(config, dict) else {}


def load_tagger(name_or_path: str | os.PathLike, **options) -> AudioTagger:
    """Resolve `name_or_path` (see `AudioTagger.from_pretrained`) and load it with `options`."""
    if isinstance(name_or_path, str) and name_or_path in _BACKENDS and _BACKENDS[name_or_path].packaged:
        return _BACKENDS[name_or_path].load(name_or_path, **options)
    hub = next((b for b in _BACKENDS.values() if b.hub_ids), None)
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        config = _read_config(local)
        for backend in _BACKENDS.values():
            if backend.accepts(config):
                return backend.load(local, **options)
    looks_like_path = isinstance(name_or_path, os.PathLike) or str(name_or_path).startswith(("/", ".", "~"))
    looks_like_hub_id = isinstance(name_or_path, str) and name_or_path.count("/") == 1 and not looks_like_path
    if hub is not None and (local.is_dir() or looks_like_path or looks_like_hub_id):
        return hub.load(name_or_path, **options)  # its own errors: missing directory, offline, not its format
    packaged = [name for name, backend in _BACKENDS.items() if backend.packaged]
    raise ValueError(
        f"unknown audio model {str(name_or_path)!r}: expected a registered name ({', '.join(packaged)}), a model "
        "directory holding config.json, or a Hugging Face hub id 'org/name'"
    )


def _model_type_is(model_type: str) -> Callable[[Mapping], bool]:
    return lambda config: config.get("model_type") == model_type


register_backend("yamnet", "audio.yamnet:YAMNetTagger.from_pretrained", accepts=_model_type_is("yamnet"),
                 packaged=True)
register_backend("ast", "audio.ast:ASTTagger.from_pretrained",
                 accepts=_model_type_is("audio-spectrogram-transformer"), hub_ids=True)
