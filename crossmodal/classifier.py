"""GuidedClassifier: one SeqPar model, many cues, many threads.

Modes (paper): ``unguided`` (the full model), ``attend`` (the full model with top-down gains on the
cued classes' branches), ``cutout`` (only the trunk and the cued classes' branches; softmax over
the kept classes, Eq. 3), ``cutout+attend`` (both) and ``mask`` (the full model, softmax over the
guide's classes only: the baseline a cutout matches at lower cost). A guide that is not confident, or
whose classes this model does not have, falls back to ``unguided`` and the result says why; with
``min_agreement``, so does every image whose cue agreement is lower (the image does not support the cue).
"""

from __future__ import annotations

import math
import numbers
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mappings import Guide
from mappings.guide import GainKey
from vision import Calibration, SeqParModel, load_seqpar
from vision.data.imagenet import imagenet_description

from .cutouts import CutoutCache
from .frames import Frame, FramePreprocessor, split_batch
from .result import MODES, GuidedResult, Prediction, RunCost, Timings
from .scoring import Scorer

RUNTIMES = ("torch", "onnxruntime")


class NonFiniteOutputError(ValueError):
    """The model produced NaN or infinite scores: its weights or the input are broken."""


class GuidedClassifier:
    """Guided recognition over any :class:`vision.SeqParModel` (see the module docstring for the modes).

    ``level_gains`` (one value or ``None`` per tree level) replaces the guide's gain of every cued
    node at that level, as calibrated by ``crossmodal.calibrate``; by default it is the model's
    ``config.calibration.level_gains``. Guides are arguments, never state: one classifier serves any
    number of threads and cues at once. ``cues`` (a :class:`crossmodal.cues.CueGuides`) makes guides
    from text and sound; by default one is made for this model on first use. ``min_agreement``
    (opt-in) makes every guided mode fall back to unguided for an image whose cue agreement is
    lower. Temperatures and the agreement map come from ``config.calibration`` (``crossmodal.calibrate``).

    ``runtime="onnxruntime"`` runs the cutout modes (trunk and kept branches) in onnxruntime from exported files,
    one per class subset and gains input, exported on first use and kept in ``onnx_cache_dir`` (default
    ``~/.cache/crossmodal/onnx``, at most ``onnx_cache_bytes``, default 2 GiB); the other modes, and
    :meth:`predict_features`, run in torch. Its timings count the whole cutout as branches (trunk 0 ms).
    """

    def __init__(self, model: SeqParModel, *, cache_size: int = 32, cache_bytes: int | None = None,
                 level_gains: Sequence[float | None] | None = None, min_agreement: float | None = None,
                 cues: Any = None, runtime: str = "torch", onnx_cache_dir: str | os.PathLike | None = None,
                 onnx_cache_bytes: int | None = None, onnx_threads: int | None = None):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.model = model.eval()
        self.runtime = runtime
        self._cues = cues
        self._cues_lock = threading.Lock()
        self.preprocessor = FramePreprocessor.for_model(model)
        files = None
        if runtime == "onnxruntime":
            from .onnx_files import OnnxFiles

            files = OnnxFiles(model, onnx_cache_dir, onnx_cache_bytes, onnx_threads)
        self.cutouts = CutoutCache(model, cache_size, cache_bytes, files)
        self.full_cost = self.cutouts.costs.cost(model)
        self.class_names = _class_names(model)
        self.scorer = Scorer.from_calibration(model.config.calibration)
        if level_gains is None:
            level_gains = model.config.calibration.level_gains
        self.level_gains = _check_level_gains(level_gains, len(model.levels))
        self.min_agreement = _check_min_agreement(min_agreement)
        self._levels = {cid: model.hierarchy.leaf_position(i)[0] for i, cid in enumerate(model.class_ids)}
        self._levels.update({name: model.hierarchy.node_position(name)[0] for name in model.hierarchy.node_names})

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike = "default", *, audio_model: str | os.PathLike | None = None,
                        **kwargs: Any) -> GuidedClassifier:
        """A classifier over a saved SeqPar model directory (``"default"``: the packaged model).

        ``audio_model``: the audio tagger for sound cues, a name or directory for ``audio.AudioTagger.from_pretrained``
        (loaded on the first sound cue).
        """
        seqpar = load_seqpar(model)
        if audio_model is not None:
            from .cues import CueGuides

            kwargs["cues"] = CueGuides(seqpar, audio_model=audio_model)
        return cls(seqpar, **kwargs)

    @property
    def cues(self):
        """The :class:`crossmodal.cues.CueGuides` (mapper and audio tagger, loaded on first use)."""
        with self._cues_lock:
            if self._cues is None:
                from .cues import CueGuides

                self._cues = CueGuides(self.model)
            return self._cues

    def guide(self, text: str | None = None, audio: Any = None, sampling_rate: int | None = None,
              top_k: int | None = None) -> Guide:
        """A guide from a text cue, or from a sound: a file, ``(waveform, rate)`` or a waveform + ``sampling_rate``."""
        if (text is None) == (audio is None):
            raise ValueError("guide needs exactly one of text= or audio=")
        if text is not None:
            return self.cues.from_text(text)
        if isinstance(audio, tuple):
            if len(audio) != 2 or sampling_rate is not None:
                raise ValueError("audio as a tuple must be (waveform, sampling_rate), without sampling_rate=")
            audio, sampling_rate = audio
        return self.cues.from_audio(audio, sampling_rate, top_k)

    def cue_stream(self, sampling_rate: int, *, top_k: int | None = None, window_seconds: float = 2.0,
                   interval_seconds: float = 1.0):
        """A :class:`crossmodal.stream.CueStream` for PCM chunks at ``sampling_rate`` Hz: re-tags the last
        ``window_seconds`` every ``interval_seconds``; bad options or a missing audio model fail here."""
        return self.cues.stream(sampling_rate, top_k=top_k, window_seconds=window_seconds,
                                interval_seconds=interval_seconds)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---------------------------------------------------------------- predict
    def predict(self, frame: Frame, guide: Guide | None = None, mode: str = "cutout+attend", top_k: int = 5,
                bgr: bool = False, level_gains: Sequence[float | None] | None = None,
                min_agreement: float | None = None) -> GuidedResult:
        """Classify one frame (path, PIL image, numpy HxWx3 uint8, torch 3xHxW)."""
        if isinstance(frame, (list, tuple)) or getattr(frame, "ndim", 3) == 4:
            raise ValueError("predict takes one frame; use predict_batch for a batch of frames")
        return self.predict_batch([frame], guide, mode, top_k, bgr, level_gains, min_agreement)[0]

    def predict_batch(self, frames: Sequence[Frame] | Any, guide: Guide | None = None, mode: str = "cutout+attend",
                      top_k: int = 5, bgr: bool = False, level_gains: Sequence[float | None] | None = None,
                      min_agreement: float | None = None) -> list[GuidedResult]:
        """Classify a batch (list of frames, numpy BxHxWx3 uint8 or torch Bx3xHxW) with one guide."""
        top_k = _check_args(mode, top_k, guide)
        start = time.perf_counter()
        inputs = self.preprocessor(split_batch(frames), bgr)
        preprocess_ms = 1e3 * (time.perf_counter() - start)
        return self._run(inputs, guide, mode, top_k, preprocess_ms, level_gains, min_agreement)

    def predict_preprocessed(self, inputs: torch.Tensor, guide: Guide | None = None, mode: str = "cutout+attend",
                             top_k: int = 5, level_gains: Sequence[float | None] | None = None,
                             min_agreement: float | None = None) -> list[GuidedResult]:
        """Classify inputs already made by ``self.preprocessor`` (``(B, 3, S, S)``)."""
        top_k = _check_args(mode, top_k, guide)
        size = self.preprocessor.image_size
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 4 or tuple(inputs.shape[1:]) != (3, size, size):
            raise ValueError(f"preprocessed inputs must be a (B, 3, {size}, {size}) tensor, "
                             f"got {getattr(inputs, 'shape', type(inputs).__name__)}")
        return self._run(inputs, guide, mode, top_k, 0.0, level_gains, min_agreement)

    @torch.inference_mode()
    def trunk_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The shared trunk's output for preprocessed inputs: the same for every mode, guide and gain.

        Inputs follow the model: its device and floating dtype (e.g. after ``clf.model.half()``)."""
        weight = next(self.model.trunk.parameters())
        return self.model.trunk(inputs.to(device=weight.device, dtype=weight.dtype))

    def predict_features(self, features: torch.Tensor, guide: Guide | None = None, mode: str = "cutout+attend",
                         top_k: int = 5, level_gains: Sequence[float | None] | None = None,
                         timings: tuple[float, float] = (0.0, 0.0),
                         min_agreement: float | None = None) -> list[GuidedResult]:
        """Classify from :meth:`trunk_features` (compare modes or gains without rerunning the trunk).

        ``timings`` are the (preprocess, trunk) milliseconds to report with the results.
        """
        top_k = _check_args(mode, top_k, guide)
        return self._branches(features, guide, mode, top_k, level_gains, timings, min_agreement)

    # --------------------------------------------------------------- internals
    def resolve(self, guide: Guide | None, mode: str) -> tuple[str, str | None, tuple[int, ...]]:
        """(mode that will run, fallback reason or None, the guide's classes this model has)."""
        if mode == "unguided":
            return mode, None, ()
        if guide is None:
            return "unguided", "no guide given", ()
        if not guide.confident:
            return "unguided", "the guide is not confident", ()
        known = tuple(c for c in guide.classes if c in self._levels)
        if not known:
            return "unguided", "none of the guide's classes is a class of this model", ()
        return mode, None, known

    def gains_for(self, net: SeqParModel, guide: Guide,
                  level_gains: Sequence[float | None] | None = None) -> dict[GainKey, float]:
        """The guide's gains restricted to keys ``net`` knows, calibrated level gains applied."""
        levels = self.level_gains if level_gains is None else _check_level_gains(level_gains, len(self.model.levels))
        known = set(net.class_ids) | set(net.hierarchy.node_names)
        out: dict[GainKey, float] = {}
        for key, value in guide.gains:
            if key in known:
                calibrated = levels[self._levels[key]] if levels else None
                out[key] = value if calibrated is None else calibrated
        return out

    def _run(self, inputs: torch.Tensor, guide: Guide | None, mode: str, top_k: int, preprocess_ms: float,
             level_gains: Sequence[float | None] | None, min_agreement: float | None) -> list[GuidedResult]:
        if self.runtime == "onnxruntime" and self.resolve(guide, mode)[0].startswith("cutout"):
            return self._results(lambda: self.onnx_logits(inputs, guide, mode, level_gains), lambda low:
                                 self.trunk_features(inputs[low]), False, top_k, (preprocess_ms, 0.0), mode, guide,
                                 min_agreement)
        start = time.perf_counter()
        features = self.trunk_features(inputs)
        trunk_ms = 1e3 * (time.perf_counter() - start)
        return self._branches(features, guide, mode, top_k, level_gains, (preprocess_ms, trunk_ms), min_agreement)

    @torch.inference_mode()
    def logits(self, features: torch.Tensor, guide: Guide | None, mode: str,
               level_gains: Sequence[float | None] | None = None) -> RawOutput:
        """What a mode computes before any probability: the network that runs, its (attended) logits over the
        classes it outputs and the plain logits of the cued classes (what the cue agreement reads)."""
        ran, fallback, classes = self.resolve(guide, mode)
        start = time.perf_counter()
        net, cost, cached = self.model, self.full_cost, None
        if ran.startswith("cutout"):
            entry, cached = self.cutouts.get(classes)
            net, cost = entry.model, entry.cost
        select_ms = 1e3 * (time.perf_counter() - start)
        ran, fallback, gains = self._attention(net, guide, ran, fallback, level_gains)
        attended, plain = net.attend_branches(features, net.level_gains(gains or None, features.shape[0]))
        return self._raw(net, ran, fallback, classes, attended, plain, cost, cached, gains, select_ms)

    @torch.inference_mode()
    def onnx_logits(self, inputs: torch.Tensor, guide: Guide | None, mode: str,
                    level_gains: Sequence[float | None] | None = None) -> RawOutput:
        """:meth:`logits` of a cutout mode from preprocessed inputs, the cutout run in onnxruntime."""
        from vision.onnx import gain_vector

        ran, fallback, classes = self.resolve(guide, mode)
        if not ran.startswith("cutout") or self.cutouts.files is None:
            raise ValueError(f"onnx_logits runs the cutout modes of a runtime='onnxruntime' classifier, got "
                             f"mode {ran!r} with runtime {self.runtime!r}")
        start = time.perf_counter()
        entry, cached = self.cutouts.get(classes)
        ran, fallback, gains = self._attention(entry.model, guide, ran, fallback, level_gains)
        session = self.cutouts.session(entry, bool(gains))
        select_ms = 1e3 * (time.perf_counter() - start)
        attended, plain = session.run(inputs.detach().float().cpu().numpy(),
                                      gain_vector(entry.model, gains) if gains else None)
        return self._raw(entry.model, ran, fallback, classes, torch.from_numpy(attended), torch.from_numpy(plain),
                         entry.cost, cached, gains, select_ms)

    def _attention(self, net: SeqParModel, guide: Guide | None, ran: str, fallback: str | None,
                   level_gains: Sequence[float | None] | None) -> tuple[str, str | None, dict[GainKey, float]]:
        """(mode, fallback, gains) once the guide's gains are known: an attend mode without a known key does not attend."""
        if not ran.endswith("attend"):
            return ran, fallback, {}
        gains = self.gains_for(net, guide, level_gains)
        if not gains:
            return "cutout" if ran == "cutout+attend" else "unguided", \
                "no gain key of the guide is known to this model", gains
        return ran, fallback, gains

    def _raw(self, net: SeqParModel, ran: str, fallback: str | None, classes: tuple[int, ...],
             attended: torch.Tensor, plain: torch.Tensor, cost: Any, cached: bool | None,
             gains: dict[GainKey, float], select_ms: float) -> RawOutput:
        ids, cued = net.class_ids, None
        if ran != "unguided":
            columns = [net.class_ids.index(c) for c in classes]
            cued = plain[:, columns]
            if ran == "mask":
                attended, ids = attended[:, columns], classes
        return RawOutput(ran, fallback, tuple(ids), attended, cued, plain if net is self.model else None,
                         RunCost(cost.params, cost.macs, self.full_cost.params, self.full_cost.macs), cached,
                         tuple(gains.items()), select_ms)

    @torch.inference_mode()
    def _branches(self, features: torch.Tensor, guide: Guide | None, mode: str, top_k: int,
                  level_gains: Sequence[float | None] | None, timings: tuple[float, float],
                  min_agreement: float | None) -> list[GuidedResult]:
        return self._results(lambda: self.logits(features, guide, mode, level_gains), lambda low: features[low], True,
                             top_k, timings, mode, guide, min_agreement)

    @torch.inference_mode()
    def _results(self, compute: Callable[[], RawOutput], features_of: Callable[[list[int]], torch.Tensor],
                 trunk_reused: bool, top_k: int, timings: tuple[float, float], mode: str, guide: Guide | None,
                 min_agreement: float | None) -> list[GuidedResult]:
        """Probabilities and results of ``compute()``; ``features_of(rows)``: trunk features for the fallback."""
        threshold = self.min_agreement if min_agreement is None else _check_min_agreement(min_agreement)
        start = time.perf_counter()
        raw = compute()
        agreement = None if raw.cued is None else self.scorer.agreement(raw.cued)
        outcomes = [_Outcome(raw.mode, raw.fallback, raw.ids, p, raw.cost,
                             None if agreement is None else float(agreement[i]))
                    for i, p in enumerate(self.scorer.probabilities(raw.mode, raw.logits, agreement))]
        if threshold is not None and agreement is not None:
            self._fall_back_below(threshold, outcomes, features_of, raw.full_logits, trunk_reused)
        branches_ms = 1e3 * (time.perf_counter() - start) - raw.select_ms
        times = Timings(timings[0], timings[1], raw.select_ms, branches_ms)
        return [o.result(mode, guide, raw.gains, times, raw.cached, top_k, self.class_names) for o in outcomes]

    def _fall_back_below(self, threshold: float, outcomes: list[_Outcome],
                         features_of: Callable[[list[int]], torch.Tensor], full_logits: torch.Tensor | None,
                         trunk_reused: bool) -> None:
        """Replace (in place) the outcomes whose cue agreement is below ``threshold`` by the unguided model's.

        ``full_logits``: the full model's plain logits when they were computed already (attend, mask);
        after a cutout the full model's branches run on the low-agreement images (``features_of(rows)``), at their
        cost (and the trunk's again, unless ``trunk_reused``).
        """
        low = [i for i, o in enumerate(outcomes) if o.agreement < threshold]
        if not low:
            return
        full = self.full_cost
        if full_logits is None:
            full_logits = self.model.forward_branches(features_of(low), [None] * len(self.model.levels))
            spent = outcomes[low[0]].cost.macs  # the cutout ran too (its trunk once, when reused)
            spent -= self.cutouts.costs.trunk_macs if trunk_reused else 0
        else:
            full_logits, spent = full_logits[low], 0
        cost = RunCost(full.params, full.macs + spent, full.params, full.macs)
        for i, probs in zip(low, self.scorer.probabilities("unguided", full_logits, None)):
            reason = f"the image does not support the cue (agreement {outcomes[i].agreement:.2f} < {threshold:.2f})"
            outcomes[i] = _Outcome("unguided", reason, self.model.class_ids, probs, cost, outcomes[i].agreement)


@dataclass(frozen=True)
class RawOutput:
    """:meth:`GuidedClassifier.logits`: ``mode`` is what ran (``fallback`` why it differs), ``logits`` ``(B, K)``
    over the output classes ``ids``, ``cued`` the plain logits of the guide's classes (``None`` unguided),
    ``full_logits`` the full model's plain logits when the full model ran."""

    mode: str
    fallback: str | None
    ids: tuple[int, ...]
    logits: torch.Tensor
    cued: torch.Tensor | None
    full_logits: torch.Tensor | None
    cost: RunCost
    cached: bool | None
    gains: tuple[tuple[GainKey, float], ...]
    select_ms: float


@dataclass
class _Outcome:
    """One image's outcome, before it becomes a :class:`GuidedResult`."""

    mode: str
    fallback: str | None
    ids: Sequence[int]
    probs: torch.Tensor
    cost: RunCost
    agreement: float | None

    def result(self, requested: str, guide: Guide | None, gains: tuple, times: Timings, cached: bool | None,
               top_k: int, names: dict[int, str]) -> GuidedResult:
        if not torch.isfinite(self.probs).all():
            raise NonFiniteOutputError("the model produced NaN or infinite scores for this input: its weights or "
                                       "the input are broken (or a gain of 0 silenced every class)")
        values, indices = self.probs.topk(min(top_k, self.probs.shape[0]))
        predictions = tuple(Prediction(self.ids[i], names[self.ids[i]], p)
                            for i, p in zip(indices.tolist(), values.tolist()))
        return GuidedResult(predictions, self.mode, requested, self.fallback, self.cost, guide,
                            gains if self.mode != "unguided" else (), times,
                            cached if self.mode.startswith("cutout") else None, self.agreement)


def _check_args(mode: str, top_k: int, guide: Any) -> int:
    """Validate the common arguments; returns ``top_k`` as an int (numpy integers are accepted)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if guide is not None and not isinstance(guide, Guide):
        raise ValueError(f"guide must be a crossmodal.Guide or None, got {type(guide).__name__}")
    return int(top_k)


def _check_min_agreement(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) <= 1 \
            or math.isnan(float(value)):
        raise ValueError(f"min_agreement must be a probability in [0, 1] or None, got {value!r}")
    return float(value)


def _check_level_gains(values: Sequence[float | None] | None, levels: int) -> tuple[float | None, ...] | None:
    """Level gains validated like ``vision.Calibration.level_gains``, one per tree level (or None)."""
    if values is None:
        return None
    gains = Calibration(level_gains=tuple(values)).level_gains
    if len(gains) != levels:
        raise ValueError(f"level_gains needs one value (or None) per tree level: {levels} levels, got {gains}")
    return gains


def _class_names(model: SeqParModel) -> dict[int, str]:
    """Per class id: the config's names, else the ImageNet-1k name (label ids are ImageNet indices)."""
    if model.config.class_names:
        return dict(zip(model.class_ids, model.config.class_names))
    return {c: imagenet_description(c) if 0 <= c < 1000 else str(c) for c in model.class_ids}
