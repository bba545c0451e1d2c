"""SeqPar vision networks (PHL / NHL) on timm backbones: exact cutouts, top-down attention, cost accounting."""

from .config import SeqParConfig
from .hierarchy import Hierarchy
from .model import SeqParModel, build_seqpar, load_seqpar

__all__ = ["Hierarchy", "SeqParConfig", "SeqParModel", "build_seqpar", "load_seqpar"]
