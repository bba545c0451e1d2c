"""Cues -> guides for one vision model: text through the CueMapper, sounds through the audio tagger and then
the mapper; the model's own class tree adds node gains (``SeqParModel.node_gains``).

Each :class:`CueGuides` owns its models (no process-wide globals); both load on first use (text never
loads the audio model), once, also when several threads ask at the same time. Pass a mapper or a tagger
to share one between classifiers.
"""

from __future__ import annotations

import numbers
import os
import threading

import numpy as np

from audio import AudioTagger, Cue, TextCue
from mappings import CueMapper, Guide
from mappings.guide import SILENT as SILENT_REASON
from vision import SeqParModel

from .stream import CueStream

DEFAULT_AUDIO_MODEL = "yamnet"  # the packaged offline tagger; an AST hub id or directory for higher accuracy
SILENT = "the sound is digital silence throughout: nothing was heard"


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

    def from_cue(self, cue: Cue | None) -> Guide:
        """Map a cue; every node of the model's tree whose classes are all cued gets a gain as well.

        ``None`` (a silent sound: the tagger heard nothing) gives a guide that is not confident."""
        if cue is None:
            return Guide.abstain([SILENT], source="audio", reason=SILENT_REASON)
        guide = self.mapper.map(cue)
        return guide.with_gains(self.model.node_gains(guide.class_gains()))

    def from_text(self, text: str) -> Guide:
        return self.from_cue(TextCue(text))

    def audio_cue(self, audio: str | os.PathLike | np.ndarray, sampling_rate: int | None = None,
                  top_k: int | None = None) -> Cue | None:
        """The tagger's cue for a sound (its ``top_k`` best labels; default: as many as the mapper decides
        from, ``MapperConfig.tag_top_k``), ``None`` for digital silence."""
        top_k = self.mapper.config.tag_top_k if top_k is None else top_k
        return self.tagger.cue(audio, sampling_rate=sampling_rate, top_k=top_k)

    def from_audio(self, audio: str | os.PathLike | np.ndarray, sampling_rate: int | None = None,
                   top_k: int | None = None) -> Guide:
        """A guide from a sound file or a waveform (``sampling_rate`` required for waveforms)."""
        return self.from_cue(self.audio_cue(audio, sampling_rate, top_k))

    def stream(self, sampling_rate: int, *, top_k: int | None = None, window_seconds: float = 2.0,
               interval_seconds: float = 1.0) -> CueStream:
        """A :class:`CueStream` that tags with the audio model and maps with the mapper.

        Everything is checked, and the audio model loaded, now: a bad option or a missing model fails here,
        not in the middle of the stream."""
        top_k = self.mapper.config.tag_top_k if top_k is None else top_k
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        stream = CueStream(lambda wave, rate: self.audio_cue(wave, rate, int(top_k)), self.from_cue,
                           sampling_rate=sampling_rate, window_seconds=window_seconds,
                           interval_seconds=interval_seconds)
        self.tagger  # noqa: B018 - load now
        return stream
