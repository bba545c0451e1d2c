"""crossmodal audio: sounds -> AudioSet labels with scores (YAMNet by default, AST optional), and the Cue interface."""

from audio.backends import AudioTagger, Tag, backends, register_backend
from audio.cue import Cue, TextCue
from audio.loading import load_audio, stream_audio

__all__ = ["AudioTagger", "Cue", "Tag", "TextCue", "backends", "load_audio", "register_backend", "stream_audio"]
