"""The YAMNet backend: `YAMNetTagger.from_pretrained("yamnet")` loads the packaged model (Apache-2.0, see weights/)."""

from audio.yamnet.frontend import LogMelConfig, LogMelFrontend
from audio.yamnet.model import YAMNet, YAMNetConfig
from audio.yamnet.tagger import YAMNetTagger

__all__ = ["LogMelConfig", "LogMelFrontend", "YAMNet", "YAMNetConfig", "YAMNetTagger"]
