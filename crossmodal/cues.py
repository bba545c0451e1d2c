"""Cues -> guides for one vision model: text through the CueMapper, sounds through the audio tagger and then
the mapper; the model's own class tree adds node gains (``SeqParModel.node_gains``).

Each :class:`CueGuides` owns its models (no process-wide globals); both load on first use (text never
loads the audio model), once, also when several threads ask at the same time. Pass a mapper or a tagger
to share one between classifiers.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from audio import AudioTagger, Cue, TextCue
from mappings import CueMapper, Guide
from vision import SeqParModel

from .stream import CueStream

DEFAULT_AUDIO_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"


class CueGuides:
    """Makes :class:`Guide` values for ``model`` from text, audio files, waveforms or ready :class:`audio.Cue`."""

    def __init__(self, model: SeqParModel, *, mapper: CueMapper | None = None, tagger: AudioTagger | None = None,
                 audio_model: str | os.PathLike = DEFAULT_AUDIO_MODEL):
        self.model = model
        self._mapper, self._tagger = mapper, tagger
        self.audio_model = audio_model
        self._mapper_lock, self._tagger_lock = threading.Lock(), threading.Lock()

    @property
    def mapper(self) -> CueMapper:
        """The packaged MiniLM CueMapper (built on first use: it takes seconds)."""
        with self._mapper_lock:
            if self._mapper is None:
                self._mapper = CueMapper.default()
            return self._mapper

    @property
    def tagger(self) -> AudioTagger:
        """The audio tagger; a model that is not available raises FileNotFoundError naming it."""
        with self._tagger_lock:
            if self._tagger is None:
                self._tagger = AudioTagger.from_pretrained(self.audio_model)
            return self._tagger

    def from_cue(self, cue: Cue) -> Guide:
        """Map a cue; every node of the model's tree whose classes are all cued gets a gain as well."""
        guide = self.mapper.map(cue)
        return guide.with_gains(self.model.node_gains(guide.class_gains()))

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
        """A :class:`CueStream` that tags with the audio model and maps with the mapper (options: window/interval)."""
        return CueStream(lambda wave, rate: self.audio_cue(wave, rate, top_k), self.from_cue,
                         sampling_rate=sampling_rate, **options)
