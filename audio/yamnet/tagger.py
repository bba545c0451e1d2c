"""The YAMNet backend: Google's AudioSet tagger (521 classes) in PyTorch, packaged with the library."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from audio.backends import AudioTagger
from audio.build_label_table import write_table
from audio.labels import read_table
from audio.yamnet.frontend import LogMelFrontend
from audio.yamnet.model import YAMNet, YAMNetConfig
from xmcommon.files import atomic_write, atomic_write_text

PACKAGED = Path(__file__).with_name("weights")
CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE = "config.json", "model.safetensors", "labels.tsv"
LICENSE_FILES = ("LICENSE", "NOTICE")  # Apache-2.0 text and attribution, copied into every saved directory
LABELS_NOTICE = (
    "# YAMNet class labels (index = row order below, the order of the model's 521 outputs): AudioSet ontology ids\n"
    "# and display names from yamnet_class_map.csv of YAMNet (tensorflow/models, research/audioset/yamnet),\n"
    "# Copyright Google LLC, licensed under the Apache License 2.0 (see LICENSE and NOTICE beside this file).\n"
    "# Changes: reformatted as tab-separated mid and display name. Written by YAMNetTagger.save_pretrained\n"
    "# (scripts/convert_yamnet.py); do not edit by hand.\n"
)


class YAMNetTagger(AudioTagger):
    """YAMNet on 0.975 s windows (one 96x64 log-mel patch each) every 0.48 s, all windows of a clip in one batch.

    Digital silence is cut and silent windows are dropped before pooling (`drop_silence`). Windows are pooled by
    their mean: on the 24 shared clips an expected label ranks first for 7 clips with mean pooling and 5 with max
    (mean reciprocal rank 0.466 vs 0.434; `python -m benchmarks.audio_pooling`). Scores follow Google's TFLite
    runtime on the TF-Hub export closely, not bit for bit (`python -m benchmarks.audio_parity`).
    """

    default_pooling = "mean"
    drop_silence = True
    batch_size = 64  # windows per forward pass: 30 s of audio

    def __init__(self, model: YAMNet, labels: tuple[str, ...], mids: tuple[str, ...]) -> None:
        if not len(labels) == len(mids) == model.config.num_classes:
            raise ValueError(
                f"expected {model.config.num_classes} labels and mids (the model's classes), got {len(labels)} "
                f"labels and {len(mids)} mids"
            )
        self.model = model.eval()
        self.frontend = LogMelFrontend(model.config.features)
        self.labels, self.mids = tuple(labels), tuple(mids)
        self.window_samples = model.config.features.patch_samples

    @property
    def sampling_rate(self) -> int:
        return self.model.config.features.sample_rate

    @property
    def hop_samples(self) -> int:
        return self.model.config.features.patch_hop_samples

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "yamnet") -> "YAMNetTagger":
        """The packaged model for "yamnet", else a directory written by `save_pretrained` (or the converter)."""
        directory = PACKAGED if name_or_path == "yamnet" else Path(name_or_path).expanduser()
        for name in (CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory}: not a YAMNet model directory (missing {name})")
        config = YAMNetConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8")))
        model = YAMNet(config)
        state = load_file(str(directory / WEIGHTS_FILE))
        expected = model.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(state) & set(expected)
                       if (state[k].shape, state[k].dtype) != (expected[k].shape, expected[k].dtype))
        if missing or unexpected or wrong:
            raise ValueError(f"{directory / WEIGHTS_FILE}: does not fit {config}: missing {missing}, unexpected "
                             f"{unexpected}, wrong shape or dtype {wrong}")
        model.load_state_dict(state)
        mids, labels = zip(*read_table(directory / LABELS_FILE))
        return cls(model, labels, mids)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json, model.safetensors, labels.tsv and the license files to `directory` (atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = json.dumps(self.model.config.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write_text(directory / CONFIG_FILE, config)
        state = {key: value.contiguous() for key, value in sorted(self.model.state_dict().items())}
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
        write_table(zip(self.mids, self.labels), directory / LABELS_FILE, notice=LABELS_NOTICE)
        for name in LICENSE_FILES:
            if (directory / name).resolve() != (PACKAGED / name).resolve():
                atomic_write(directory / name, lambda tmp, name=name: shutil.copyfile(PACKAGED / name, tmp))
        return directory

    def patches(self, windows: list[np.ndarray]) -> torch.Tensor:
        """Log-mel patches (windows, 96, 64); a window shorter than 0.975 s is padded with zeros, as YAMNet pads a
        short clip. A window that continues the previous one by one hop shares its frames, which are computed
        once (frames are computed row by row, exactly, so sharing changes no bit)."""
        config, hop = self.model.config.features, self.hop_samples
        runs: list[list[np.ndarray]] = []
        for window in windows:
            window = np.pad(window, (0, self.window_samples - len(window)))
            if runs and np.array_equal(window[:-hop], runs[-1][-1][hop:]):
                runs[-1].append(window)
            else:
                runs.append([window])
        patches = []
        for run in runs:
            signal = np.concatenate([run[0]] + [window[-hop:] for window in run[1:]])
            frames = self.frontend(torch.from_numpy(signal)[None])[0]
            patches.append(frames.unfold(0, config.patch_frames, config.patch_hop_frames).transpose(1, 2))
        return torch.cat(patches)

    @torch.inference_mode()
    def window_scores(self, windows: list[np.ndarray]) -> np.ndarray:
        """Scores (windows, 521) for a batch of windows, all in one forward pass."""
        return torch.sigmoid(self.model(self.patches(windows))).numpy()
