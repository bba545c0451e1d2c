"""Evaluating models: the shared metrics (:mod:`vision.eval.metrics`) and the accuracy / cutout / gain-sweep
evaluation behind ``python -m vision.evaluate`` (:mod:`vision.eval.evaluation`), and evaluation sharded over torchrun
processes with a resumable per-image journal (:mod:`vision.eval.sharded`)."""

from .evaluation import EvalReport, evaluate

__all__ = ["EvalReport", "evaluate"]
