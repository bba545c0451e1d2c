"""Training SeqPar models and timm baselines: config, engine (exactly resumable, torchrun), checkpoints, models.

``python -m vision.train --config ...`` is the command line (see :mod:`vision.train`).
"""

from .config import DataConfig, OptimConfig, RunConfig, TrainConfig, load_config
from .engine import DivergedError, TrainResult, train

__all__ = ["DataConfig", "DivergedError", "OptimConfig", "RunConfig", "TrainConfig", "TrainResult", "load_config",
           "train"]
