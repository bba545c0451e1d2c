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
import io
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mappings import Guide
from vision.data import LabelledImage
from vision.eval.metrics import hits_at_k, per_class_accuracy
from xmcommon.cli import to_json
from xmcommon.files import atomic_write, atomic_write_text

from .classifier import GuidedClassifier
from .result import MODES

CUE_KINDS = ("class", "superclass")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


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
             gain_sweep: Sequence[float] = (), progress: bool = True) -> EvalReport:
    """Run every mode on every item (shared trunk features) and aggregate."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}, got {list(modes)}")
    if not items:
        raise ValueError("nothing to evaluate: no images")
    guides: dict[str, Guide] = {}
    start = time.perf_counter()
    if any(item.cue is not None for item in items):
        clf.cues.mapper  # noqa: B018 - load the mapper before timing cues
    mapper_load_seconds = time.perf_counter() - start
    cue_seconds = 0.0
    levels = len(clf.model.levels)
    rows: list[dict[str, Any]] = []
    sweep_hits: dict[tuple[str, float], int] = defaultdict(int)
    for item in tqdm(items, desc="evaluate", unit="img", disable=not progress):
        guide = None
        if item.cue is not None:
            if item.cue not in guides:
                start = time.perf_counter()
                guides[item.cue] = guide_for_cue(clf, item.cue)
                cue_seconds += time.perf_counter() - start
            guide = guides[item.cue]
        start = time.perf_counter()
        inputs = clf.preprocessor([item.image.path])
        preprocess_ms = 1e3 * (time.perf_counter() - start)
        start = time.perf_counter()
        features = clf.trunk_features(inputs)
        trunk_ms = 1e3 * (time.perf_counter() - start)
        for mode in modes:
            result = clf.predict_features(features, guide, mode, top_k=5, timings=(preprocess_ms, trunk_ms))[0]
            ids = [p.class_id for p in result.predictions]
            ranked = torch.tensor([ids])
            label = torch.tensor([item.image.class_id])
            rows.append({
                "image": item.image.path.name, "class_id": item.image.class_id, "cue": item.cue or "",
                "wrong_cue": item.wrong_cue, "mode": mode, "ran": result.mode, "fallback": result.fallback or "",
                "pred": ids[0], "top1": bool(hits_at_k(ranked, label, 1)), "top5": bool(hits_at_k(ranked, label, 5)),
                "params": result.cost.params, "gmacs": result.cost.gmacs,
                "latency_ms": trunk_ms + result.timings.branches_ms, "select_ms": result.timings.select_ms,
                "preprocess_ms": preprocess_ms,
                "guide_has_label": guide is not None and item.image.class_id in guide.classes,
            })
        for gain in gain_sweep:
            for mode in ("attend", "cutout+attend"):
                result = clf.predict_features(features, guide, mode, top_k=1, level_gains=[gain] * levels)[0]
                sweep_hits[(mode, gain)] += result.top1.class_id == item.image.class_id
    confident = [g for g in guides.values() if g.confident]
    cues = {
        "distinct_cues": len(guides), "confident_guides": len(confident), "mapper_load_s": mapper_load_seconds,
        "cue_to_guide_ms_per_distinct_cue": 1e3 * cue_seconds / max(1, len(guides)),
        "cue_to_guide_ms_amortized_per_image": 1e3 * cue_seconds / len(items),
        "images_with_cue": sum(i.cue is not None for i in items),
        "wrong_cues": sum(i.wrong_cue for i in items),
        "guide_contains_label": sum(bool(r["guide_has_label"]) for r in rows if r["mode"] == modes[0]) / len(items),
        "cutout_cache": {k: v for k, v in clf.cutouts.stats().to_dict().items() if k != "build_seconds"},
        "mean_cutout_build_ms": 1e3 * statistics.fmean(clf.cutouts.stats().build_seconds or [0.0]),
    }
    sweep = [{"gain": g, "mode": m, "top1": hits / len(items)} for (m, g), hits in sorted(sweep_hits.items())]
    return EvalReport(_summary(rows, modes), rows, _per_class(rows, modes, clf.class_names), cues, sweep)


def guide_for_cue(clf: GuidedClassifier, cue: str) -> Guide:
    """A guide from a cue string: an existing audio file path, else text."""
    if cue.lower().endswith(AUDIO_SUFFIXES) and Path(cue).is_file():
        return clf.guide(audio=cue)
    return clf.guide(text=cue)


def _summary(rows: list[dict[str, Any]], modes: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for mode in modes:
        sel = [r for r in rows if r["mode"] == mode]
        mean = lambda key: statistics.fmean(float(r[key]) for r in sel)  # noqa: E731
        out.append({"mode": mode, "images": len(sel), "top1": mean("top1"), "top5": mean("top5"),
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


def markdown(report: EvalReport, title: str) -> str:
    """The Markdown report: summary per mode, cue statistics, gain sweep."""
    lines = [f"# {title}", "", "| mode | images | top-1 | top-5 | mean params | mean GMACs | latency ms (median) "
             "| cutout lookup/build ms | fallback rate |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report.summary:
        lines.append(f"| {s['mode']} | {s['images']} | {100 * s['top1']:.1f} % | {100 * s['top5']:.1f} % | "
                     f"{s['mean_params']:,.0f} | {s['mean_gmacs']:.3f} | {s['latency_ms']:.1f} | "
                     f"{s['select_ms']:.1f} | {100 * s['fallback_rate']:.1f} % |")
    c = report.cues
    lines += ["", f"Cues: {c['images_with_cue']} images with a cue ({c['wrong_cues']} misleading), "
              f"{c['distinct_cues']} distinct, {c['confident_guides']} mapped confidently; the guide contains the "
              f"true class for {100 * c['guide_contains_label']:.1f} % of the images. Cue -> guide: "
              f"{c['cue_to_guide_ms_per_distinct_cue']:.1f} ms per distinct cue, "
              f"{c['cue_to_guide_ms_amortized_per_image']:.1f} ms amortised per image; "
              f"mean cutout build {c['mean_cutout_build_ms']:.1f} ms."]
    if report.gain_sweep:
        lines += ["", "| gain (all levels) | mode | top-1 |", "|---:|---|---:|"]
        lines += [f"| {s['gain']:g} | {s['mode']} | {100 * s['top1']:.1f} % |" for s in report.gain_sweep]
    return "\n".join(lines) + "\n"


def write_outputs(report: EvalReport, out_dir: str | Path, title: str) -> dict[str, str]:
    """report.md, summary.json, per_image.csv, per_class.csv and the plots; returns {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "json": out / "summary.json", "per_image": out / "per_image.csv",
             "per_class": out / "per_class.csv", "accuracy_vs_gmacs": out / "accuracy_vs_gmacs.png"}
    atomic_write_text(paths["markdown"], markdown(report, title))
    atomic_write_text(paths["json"], to_json(report.to_dict(), indent=2))
    for key, rows in (("per_image", report.per_image), ("per_class", report.per_class)):
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(paths[key], text.getvalue())
    _plot(report, paths, out)
    return {k: str(v) for k, v in paths.items()}


def _plot(report: EvalReport, paths: dict[str, Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for s in report.summary:
        ax.scatter(s["mean_gmacs"], 100 * s["top1"], label=s["mode"])
    ax.set(xlabel="mean GMACs per image (what ran)", ylabel="top-1 (%)", title="accuracy vs compute per mode")
    ax.legend()
    _save_figure(fig, paths["accuracy_vs_gmacs"])
    if report.gain_sweep:
        paths["gain_sweep"] = out / "gain_sweep.png"
        fig, ax = plt.subplots(figsize=(5, 4))
        for mode in ("attend", "cutout+attend"):
            pts = [(s["gain"], 100 * s["top1"]) for s in report.gain_sweep if s["mode"] == mode]
            ax.plot(*zip(*pts), marker="o", label=mode)
        ax.set(xlabel="attention gain (all levels)", ylabel="top-1 (%)", title="gain sweep")
        ax.legend()
        _save_figure(fig, paths["gain_sweep"])


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
