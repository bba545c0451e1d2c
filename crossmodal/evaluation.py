"""Guided vs unguided recognition on a labelled image folder: the library behind ``python -m crossmodal.evaluate``.

Cues come from a CSV (``image,cue_audio_or_text``) or are synthesised from each image's true label
(``--cue-from-label class|superclass``), optionally replaced by a misleading cue (another class's)
with probability ``--wrong-cue-rate``. Every mode runs on the same trunk features; per mode the
report gives top-1/top-5, the mean parameters and GMACs that actually ran, latency per image
(trunk + branches; cutout lookup/build and the cue -> guide cost are reported apart, amortised),
and the fallback rate. Writes report.md, summary.json, per_image.csv, per_class.csv and plots.
"""

from __future__ import annotations

import csv
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mappings import Guide
from vision.data import LabelledImage
from vision.distributed import all_gather_objects, setup_distributed
from vision.eval.metrics import auroc, calibration, hits_at_k, per_class_accuracy
from vision.eval.sharded import fingerprint, run_sharded

from .classifier import GuidedClassifier
from .result import MODES

CUE_KINDS = ("class", "superclass")
CALIBRATION_BINS = 15
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
# What an evaluation measures rather than computes (timings, per-process cache counters): these differ between
# any two runs; every other figure of the report is the same for any number of processes and after a resume.
MEASURED = frozenset({"latency_ms", "select_ms", "preprocess_ms", "mapper_load_s", "cue_to_guide_ms_per_distinct_cue",
                      "cue_to_guide_ms_amortized_per_image", "cutout_cache", "mean_cutout_build_ms"})


@dataclass(frozen=True)
class EvalItem:
    """One image, its true class, its cue (text or audio path, or None) and whether the cue is misleading."""

    image: LabelledImage
    cue: str | None
    wrong_cue: bool = False


@dataclass
class EvalReport:
    """Everything one evaluation measured; ``summary`` has one row per mode."""

    summary: list[dict[str, Any]]
    per_image: list[dict[str, Any]]
    per_class: list[dict[str, Any]]
    cues: dict[str, Any]
    gain_sweep: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "cues": self.cues, "gain_sweep": self.gain_sweep,
                "per_class": self.per_class}


def label_cue(class_id: int, kind: str) -> str:
    """The text cue a label stands for: its ImageNet name, or its WordNet parent's name (``superclass``)."""
    if kind not in CUE_KINDS:
        raise ValueError(f"cue kind must be one of {CUE_KINDS}, got {kind!r}")
    from mappings import imagenet_classes, imagenet_hierarchy

    if kind == "class":
        return imagenet_classes()[class_id].name
    hierarchy = imagenet_hierarchy()
    return hierarchy.lemmas(hierarchy.ancestors(class_id)[0])[0].replace("_", " ")


def read_cue_csv(path: str | Path) -> dict[str, str]:
    """``image,cue`` rows -> {image file name: cue}; a cue naming an audio file becomes its absolute path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cue CSV {path} not found")
    cues: dict[str, str] = {}
    with path.open(newline="") as handle:
        for row_number, row in enumerate(csv.reader(handle), start=1):
            if not row or (row_number == 1 and [c.strip().lower() for c in row[:2]] == ["image", "cue"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{path}, row {row_number}: expected 'image,cue_audio_or_text', got {row}")
            image, cue = row[0].strip(), row[1].strip()
            if cue.lower().endswith(AUDIO_SUFFIXES):
                audio = (path.parent / cue).resolve()
                if not audio.is_file():
                    raise FileNotFoundError(f"{path}, row {row_number}: audio cue {audio} not found")
                cue = str(audio)
            cues[Path(image).name] = cue
    if not cues:
        raise ValueError(f"cue CSV {path} has no rows")
    return cues


def build_items(images: Sequence[LabelledImage], *, cue_csv: str | Path | None = None,
                cue_from_label: str | None = None, wrong_cue_rate: float = 0.0, seed: int = 0,
                classes: Sequence[int] | None = None) -> list[EvalItem]:
    """Attach cues to images; misleading cues are the label cue of another (random) class from ``classes``."""
    if cue_csv is not None and cue_from_label is not None:
        raise ValueError("give either a cue CSV or --cue-from-label, not both")
    if not 0.0 <= wrong_cue_rate <= 1.0:
        raise ValueError(f"wrong_cue_rate must be in [0, 1], got {wrong_cue_rate}")
    if wrong_cue_rate and cue_from_label is None:
        raise ValueError("wrong_cue_rate needs --cue-from-label (misleading cues are other classes' label cues)")
    rng = random.Random(seed)
    table = read_cue_csv(cue_csv) if cue_csv is not None else {}
    others = sorted(set(classes if classes is not None else (i.class_id for i in images)))
    items = []
    for image in images:
        if cue_from_label is not None:
            wrong = len(others) > 1 and rng.random() < wrong_cue_rate
            label = rng.choice([c for c in others if c != image.class_id]) if wrong else image.class_id
            items.append(EvalItem(image, label_cue(label, cue_from_label), wrong))
        else:
            items.append(EvalItem(image, table.get(image.path.name)))
    return items


def evaluate(clf: GuidedClassifier, items: Sequence[EvalItem], *, modes: Sequence[str] = MODES,
             gain_sweep: Sequence[float] = (), min_agreement: float | None = None, progress: bool = True,
             journal: str | Path | None = None, resume: bool = False,
             stop_after: int | None = None) -> EvalReport | None:
    """Run every mode on every item (shared trunk features) and aggregate.

    ``min_agreement`` is the classifier's opt-in policy: guided modes fall back to unguided for images whose
    cue agreement is lower. Under torchrun the images are shared out over the processes
    (:mod:`vision.eval.sharded`) and every process returns the single-process report (its timings and cache
    counters, :data:`MEASURED`, are those of this run's processes). ``journal``: a folder for the per-image
    records (``per_image*.jsonl``); ``resume`` skips the images found there; ``stop_after`` stops each process
    after that many images and returns None (a simulated interruption).
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}, got {list(modes)}")
    if not items:
        raise ValueError("nothing to evaluate: no images")
    ctx = setup_distributed(clf.device.type)
    start = time.perf_counter()
    if any(item.cue is not None for item in items):
        clf.cues.mapper  # noqa: B018 - load the mapper before timing cues
    mapper_load_seconds = time.perf_counter() - start
    guides: dict[str, Guide] = {}

    def compute(todo: Sequence[Sequence[int]]) -> Iterator[list[dict[str, Any]]]:
        for (index,) in todo:
            yield [_image_record(clf, index, items[index], guides, modes, gain_sweep, min_agreement)]

    key = {"evaluator": "crossmodal.evaluate", "model": fingerprint(clf.model.config.to_dict()), "modes": list(modes),
           "gain_sweep": [float(g) for g in gain_sweep], "min_agreement": min_agreement,
           "items": fingerprint([[str(i.image.path), i.image.class_id, i.cue, i.wrong_cue] for i in items])}
    records = run_sharded([[i] for i in range(len(items))], compute, key=key, ctx=ctx, device=clf.device,
                          folder=journal, resume=resume, stop_after=stop_after, progress=progress)
    if records is None:
        return None
    rows = [row for r in records for row in r["rows"]]
    confident = {r["cue"]: r["guide_confident"] for r in records if r["guide_confident"] is not None}
    cue_seconds = sum(r["cue_ms"] for r in records) / 1e3
    processes = all_gather_objects((mapper_load_seconds, clf.cutouts.stats()), ctx)
    cache = [stats for _, stats in processes]
    builds = [s for stats in cache for s in stats.build_seconds]
    cues = {
        "distinct_cues": len(confident), "confident_guides": sum(confident.values()),
        "mapper_load_s": max(load for load, _ in processes),
        "cue_to_guide_ms_per_distinct_cue": 1e3 * cue_seconds / max(1, len(confident)),
        "cue_to_guide_ms_amortized_per_image": 1e3 * cue_seconds / len(items),
        "images_with_cue": sum(i.cue is not None for i in items),
        "wrong_cues": sum(i.wrong_cue for i in items),
        "guide_contains_label": sum(bool(r["guide_has_label"]) for r in rows if r["mode"] == modes[0]) / len(items),
        "cutout_cache": _cache_totals(cache),
        "mean_cutout_build_ms": 1e3 * statistics.fmean(builds or [0.0]),
    }
    cues["agreement_auroc"] = agreement_auroc(rows)
    sweep_hits: dict[tuple[str, float], int] = defaultdict(int)
    for r in records:
        for mode, gain, hit in r["sweep"]:
            sweep_hits[(mode, gain)] += hit
    sweep = [{"gain": g, "mode": m, "top1": hits / len(items)} for (m, g), hits in sorted(sweep_hits.items())]
    return EvalReport(_summary(rows, modes), rows, _per_class(rows, modes, clf.class_names), cues, sweep)


def _image_record(clf: GuidedClassifier, index: int, item: EvalItem, guides: dict[str, Guide], modes: Sequence[str],
                  gain_sweep: Sequence[float], min_agreement: float | None) -> dict[str, Any]:
    """Everything the report needs of one image: a row per mode, its gain-sweep hits, its cue's guide cost."""
    guide, cue_ms = None, 0.0
    if item.cue is not None:
        if item.cue not in guides:
            start = time.perf_counter()
            guides[item.cue] = guide_for_cue(clf, item.cue)
            cue_ms = 1e3 * (time.perf_counter() - start)
        guide = guides[item.cue]
    start = time.perf_counter()
    inputs = clf.preprocessor([item.image.path])
    preprocess_ms = 1e3 * (time.perf_counter() - start)
    start = time.perf_counter()
    features = clf.trunk_features(inputs)
    trunk_ms = 1e3 * (time.perf_counter() - start)
    rows = []
    for mode in modes:
        result = clf.predict_features(features, guide, mode, top_k=5, timings=(preprocess_ms, trunk_ms),
                                      min_agreement=min_agreement)[0]
        ids = [p.class_id for p in result.predictions]
        ranked = torch.tensor([ids])
        label = torch.tensor([item.image.class_id])
        rows.append({
            "image": item.image.path.name, "class_id": item.image.class_id, "cue": item.cue or "",
            "wrong_cue": item.wrong_cue, "mode": mode, "ran": result.mode, "fallback": result.fallback or "",
            "pred": ids[0], "top1": bool(hits_at_k(ranked, label, 1)), "top5": bool(hits_at_k(ranked, label, 5)),
            "confidence": result.top1.prob,
            "cue_agreement": "" if result.cue_agreement is None else result.cue_agreement,
            "params": result.cost.params, "gmacs": result.cost.gmacs,
            "latency_ms": trunk_ms + result.timings.branches_ms, "select_ms": result.timings.select_ms,
            "preprocess_ms": preprocess_ms,
            "guide_has_label": guide is not None and item.image.class_id in guide.classes,
        })
    levels = len(clf.model.levels)
    sweep = [[mode, float(gain), clf.predict_features(features, guide, mode, top_k=1, level_gains=[gain] * levels)[0]
              .top1.class_id == item.image.class_id] for gain in gain_sweep for mode in ("attend", "cutout+attend")]
    return {"index": index, "cue": item.cue, "rows": rows, "sweep": sweep, "cue_ms": cue_ms,
            "guide_confident": None if guide is None else guide.confident}


def _cache_totals(stats: Sequence[Any]) -> dict[str, Any]:
    """The cutout caches of all processes as one: counts and sizes summed, limits as configured."""
    totals = {k: v for k, v in stats[0].to_dict().items() if k != "build_seconds"}
    for other in stats[1:]:
        for k, v in other.to_dict().items():
            if k in ("hits", "misses", "size", "nbytes"):
                totals[k] += v
    return totals


def agreement_auroc(rows: list[dict[str, Any]]) -> float | None:
    """AUROC of the cue agreement separating right from misleading cues (one value per image: the agreement is
    the same in every guided mode); None without both kinds of cue."""
    by_image = {(r["image"], r["cue"]): (r["cue_agreement"], r["wrong_cue"]) for r in rows if r["cue_agreement"] != ""}
    values = list(by_image.values())
    if len({wrong for _, wrong in values}) < 2:
        return None
    return auroc(torch.tensor([a for a, _ in values]), torch.tensor([not wrong for _, wrong in values]))


def guide_for_cue(clf: GuidedClassifier, cue: str) -> Guide:
    """A guide from a cue string: an existing audio file path, else text."""
    if cue.lower().endswith(AUDIO_SUFFIXES) and Path(cue).is_file():
        return clf.guide(audio=cue)
    return clf.guide(text=cue)


def _summary(rows: list[dict[str, Any]], modes: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for mode in modes:
        sel = [r for r in rows if r["mode"] == mode]
        wrong = [r for r in sel if r["wrong_cue"]]
        right = [r for r in sel if not r["wrong_cue"]]

        def mean(key: str, of: list[dict[str, Any]] = sel) -> float | None:
            return statistics.fmean(float(r[key]) for r in of) if of else None

        reliability = calibration(torch.tensor([r["confidence"] for r in sel]),
                                  torch.tensor([r["top1"] for r in sel]), CALIBRATION_BINS)
        out.append({"mode": mode, "images": len(sel), "top1": mean("top1"), "top5": mean("top5"),
                    "top1_right_cue": mean("top1", right), "top1_wrong_cue": mean("top1", wrong),
                    "mean_confidence": mean("confidence"), "mean_confidence_wrong_cue": mean("confidence", wrong),
                    "ece": reliability.ece, "reliability": reliability.to_dict()["bins"],
                    "mean_params": mean("params"), "mean_gmacs": mean("gmacs"),
                    "latency_ms": statistics.median(r["latency_ms"] for r in sel),
                    "select_ms": statistics.fmean(r["select_ms"] for r in sel),
                    "fallback_rate": statistics.fmean(bool(r["fallback"]) for r in sel)})
    return out


def _per_class(rows: list[dict[str, Any]], modes: Sequence[str], names: dict[int, str]) -> list[dict[str, Any]]:
    labels = sorted({r["class_id"] for r in rows})
    position = {c: i for i, c in enumerate(labels)}
    table = [{"class_id": c, "name": names.get(c, ""), "images": 0} for c in labels]
    for mode in modes:
        sel = [r for r in rows if r["mode"] == mode]
        targets = torch.tensor([position[r["class_id"]] for r in sel])
        accuracy = per_class_accuracy(targets, torch.tensor([r["top1"] for r in sel]), len(labels))
        for entry, value in zip(table, accuracy):
            entry[f"top1_{mode}"] = value
    for r in rows:
        table[position[r["class_id"]]]["images"] += r["mode"] == modes[0]
    return table
