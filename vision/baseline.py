"""Plain timm classifiers (the ResNet rows of the paper's tables) that carry their label ids, names and
preprocessing, saved like SeqPar models: ``config.json`` (with a ``timm_model`` entry) + ``model.safetensors``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from xmcommon.files import atomic_write, atomic_write_text

from .config import Preprocessing

TIMM_KEY = "timm_model"


class TimmClassifier(nn.Module):
    """A timm classifier whose outputs are the label ids ``class_ids`` (names ``class_names``)."""

    def __init__(self, name: str, class_ids: Sequence[int], class_names: Sequence[str], *,
                 image_size: int = 224, preprocessing: Preprocessing | Mapping[str, Any] | None = None,
                 metadata: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__()
        import timm

        if len(class_ids) != len(class_names) or not class_ids:
            raise ValueError(f"class_ids ({len(class_ids)}) and class_names ({len(class_names)}) must be equally long, "
                             "with at least one class")
        self.name, self.kwargs, self.metadata = name, dict(kwargs), dict(metadata or {})
        self.class_ids, self.class_names = tuple(int(c) for c in class_ids), tuple(str(n) for n in class_names)
        self.image_size = int(image_size)
        if preprocessing is None:
            preprocessing = Preprocessing.for_backbone(name)
        self.preprocessing = preprocessing if isinstance(preprocessing, Preprocessing) else Preprocessing(**preprocessing)
        self.net = timm.create_model(name, pretrained=False, num_classes=len(class_ids), **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def data_config(self) -> dict[str, Any]:
        """The eval data config for ``timm.data.create_transform``."""
        return self.preprocessing.data_config(self.image_size)

    def config_dict(self) -> dict[str, Any]:
        return {TIMM_KEY: self.name, "kwargs": self.kwargs, "class_ids": list(self.class_ids),
                "class_names": list(self.class_names), "image_size": self.image_size,
                "preprocessing": dataclasses.asdict(self.preprocessing), "metadata": self.metadata}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
        atomic_write_text(directory / "config.json", json.dumps(self.config_dict(), indent=2))

    @classmethod
    def from_config_dict(cls, config: Mapping[str, Any]) -> TimmClassifier:
        """The (randomly initialised) classifier a saved ``config.json`` describes; older configs kept the
        preprocessing in ``metadata["train_config"]["data"]`` (input size and augmentation settings)."""
        config = dict(config)
        image_size, preprocessing = config.get("image_size"), config.get("preprocessing")
        if image_size is None:  # saved before preprocessing was a setting of its own
            data = dict(config.get("metadata", {}).get("train_config", {}).get("data", {}))
            image_size = data.get("input_size", 224)
            augment = data.get("augment") or {}
            base = dataclasses.asdict(Preprocessing.for_backbone(config[TIMM_KEY]))
            preprocessing = {**base, **{k: augment[k] for k in ("mean", "std", "crop_pct", "interpolation")
                                        if augment.get(k) is not None}}
        return cls(config[TIMM_KEY], config["class_ids"], config["class_names"], image_size=image_size,
                   preprocessing=preprocessing, metadata=config.get("metadata"), **config.get("kwargs", {}))
