"""SeqPar vision networks (PHL / NHL) on timm backbones: exact cutouts, top-down attention, cost accounting."""

from .config import Calibration, Preprocessing, SeqParConfig
from .hierarchy import Hierarchy
from .io import load_model, load_seqpar
from .model import SeqParModel, build_seqpar

__all__ = ["Calibration", "Hierarchy", "Preprocessing", "SeqParConfig", "SeqParModel", "build_seqpar", "load_model",
           "load_seqpar"]
