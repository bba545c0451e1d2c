"""Cues -> guides: text through the CueMapper, sounds through the AST AudioTagger and then the mapper.

Both models load on first use (text never loads the audio model), once, also when several threads
ask at the same time.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from audio import AudioTagger, Cue, TextCue
from mappings import CueMapper

from .guide import Guide
from .stream import CueStream

DEFAULT_AUDIO_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"
_DEFAULT_MAPPER: CueMapper | None = None
_DEFAULT_MAPPER_LOCK = threading.Lock()


def default_mapper() -> CueMapper:
    """The packaged MiniLM CueMapper, built once per process (building it takes seconds)."""
    global _DEFAULT_MAPPER
    with _DEFAULT_MAPPER_LOCK:
        if _DEFAULT_MAPPER is None:
            _DEFAULT_MAPPER = CueMapper.default()
        return _DEFAULT_MAPPER


class CueGuides:
    """Makes :class:`Guide` values from text, audio files, waveforms or ready :class:`audio.Cue` objects."""

    def __init__(self, mapper: CueMapper | None = None, tagger: AudioTagger | None = None,
                 audio_model: str | os.PathLike = DEFAULT_AUDIO_MODEL, tree: dict | None = None):
        self._mapper, self._tagger = mapper, tagger
        self.audio_model = audio_model
        self.tree = tree  # a vision model's class tree with class ids as leaves: its nodes get gains too
        self._mapper_lock, self._tagger_lock = threading.Lock(), threading.Lock()

    @property
    def mapper(self) -> CueMapper:
        with self._mapper_lock:
            if self._mapper is None:
                self._mapper = default_mapper()
            return self._mapper

    @property
    def tagger(self) -> AudioTagger:
        """The AST tagger; offline without a checkpoint this raises FileNotFoundError naming the model."""
        with self._tagger_lock:
            if self._tagger is None:
                self._tagger = AudioTagger.from_pretrained(self.audio_model)
            return self._tagger

    def from_cue(self, cue: Cue) -> Guide:
        """Map a cue; with ``tree``, every node of it whose classes are all cued gets a gain as well."""
        mapped = self.mapper.map(cue)
        extra = mapped.node_gains(self.tree) if self.tree is not None else {}
        return Guide.from_mapping(mapped, cue, extra_gains=extra)

    def from_text(self, text: str) -> Guide:
        return self.from_cue(TextCue(text))

    def audio_cue(self, audio: str | os.PathLike | np.ndarray, sampling_rate: int | None = None,
                  top_k: int = 5) -> Cue:
        return self.tagger.cue(audio, sampling_rate=sampling_rate, top_k=top_k)

    def from_audio(self, audio: str | os.PathLike | np.ndarray, sampling_rate: int | None = None,
                   top_k: int = 5) -> Guide:
        """A guide from a sound file or a waveform (``sampling_rate`` required for waveforms)."""
        return self.from_cue(self.audio_cue(audio, sampling_rate, top_k))

    def stream(self, sampling_rate: int, top_k: int = 5, **options: Any) -> CueStream:
        """A :class:`CueStream` that tags with the AST and maps with the mapper (options: window/interval)."""
        return CueStream(lambda wave, rate: self.audio_cue(wave, rate, top_k), self.from_cue,
                         sampling_rate=sampling_rate, **options)
