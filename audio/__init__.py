"""crossmodal audio: sounds -> semantic labels with scores (AST audio tagging), and the shared Cue interface."""

from audio.cue import Cue, TextCue
from audio.loading import load_audio, stream_audio
from audio.tagger import AudioTagger, Tag

__all__ = ["AudioTagger", "Cue", "Tag", "TextCue", "load_audio", "stream_audio"]
