"""``python -m crossmodal.evaluate``: guided vs unguided recognition on a labelled image folder.

Cues come from a CSV (``image,cue_audio_or_text``) or are synthesised from each image's true label
(``--cue-from-label class|superclass``), optionally replaced by a misleading cue (another class's)
with probability ``--wrong-cue-rate``. Every mode runs on the same trunk features; per mode the
report gives top-1/top-5, the mean parameters and GMACs that actually ran, latency per image
(trunk + branches; cutout lookup/build and the cue -> guide cost are reported apart, amortised),
and the fallback rate. Writes report.md, summary.json, per_image.csv, per_class.csv and plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .classifier import GuidedClassifier
from xmcommon.cli import run_main
from .dataset import AUDIO_SUFFIXES, LabelledImage, list_labelled_images, read_cue_csv
from .guide import Guide
from .result import MODES

CUE_KINDS = ("class", "superclass")


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
            rows.append({
                "image": item.image.path.name, "class_id": item.image.class_id, "cue": item.cue or "",
                "wrong_cue": item.wrong_cue, "mode": mode, "ran": result.mode, "fallback": result.fallback or "",
                "pred": ids[0], "top1": ids[0] == item.image.class_id, "top5": item.image.class_id in ids,
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
    table: dict[int, dict[str, Any]] = {}
    for r in rows:
        entry = table.setdefault(r["class_id"], {"class_id": r["class_id"], "name": names.get(r["class_id"], ""),
                                                 "images": 0, **{f"top1_{m}": 0.0 for m in modes}})
        entry[f"top1_{r['mode']}"] += r["top1"]
        entry["images"] += r["mode"] == modes[0]
    for entry in table.values():
        for m in modes:
            entry[f"top1_{m}"] /= entry["images"]
    return [table[c] for c in sorted(table)]


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
    paths["markdown"].write_text(markdown(report, title))
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2))
    for key, rows in (("per_image", report.per_image), ("per_class", report.per_class)):
        with paths[key].open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
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
    fig.tight_layout()
    fig.savefig(paths["accuracy_vs_gmacs"], dpi=120)
    plt.close(fig)
    if report.gain_sweep:
        paths["gain_sweep"] = out / "gain_sweep.png"
        fig, ax = plt.subplots(figsize=(5, 4))
        for mode in ("attend", "cutout+attend"):
            pts = [(s["gain"], 100 * s["top1"]) for s in report.gain_sweep if s["mode"] == mode]
            ax.plot(*zip(*pts), marker="o", label=mode)
        ax.set(xlabel="attention gain (all levels)", ylabel="top-1 (%)", title="gain sweep")
        ax.legend()
        fig.tight_layout()
        fig.savefig(paths["gain_sweep"], dpi=120)
        plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Guided vs unguided evaluation on a labelled image folder.")
    parser.add_argument("--images", required=True, help="ImageFolder, or a folder of {wnid}_{name}.JPEG files")
    cues = parser.add_mutually_exclusive_group()
    cues.add_argument("--cues", help="CSV with rows 'image,cue_audio_or_text'")
    cues.add_argument("--cue-from-label", choices=CUE_KINDS, help="synthesise a text cue from each true label")
    parser.add_argument("--wrong-cue-rate", type=float, default=0.0, help="probability of a misleading cue")
    parser.add_argument("--model", default="default", help="SeqPar model directory")
    parser.add_argument("--audio-model", default=None, help="AST checkpoint for audio cues in the CSV")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--gain-sweep", default="", help="gains to sweep on all levels, e.g. '1,1.5,2,3,4'")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="eval_out", help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(args: argparse.Namespace) -> dict[str, Any]:
    clf = GuidedClassifier.from_pretrained(args.model, audio_model=args.audio_model)
    images = list_labelled_images(args.images)[: args.limit]
    items = build_items(images, cue_csv=args.cues, cue_from_label=args.cue_from_label,
                        wrong_cue_rate=args.wrong_cue_rate, seed=args.seed, classes=clf.model.class_ids)
    try:
        sweep = [float(g) for g in args.gain_sweep.split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--gain-sweep {args.gain_sweep!r}: expected numbers like '1,2,4'") from None
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    report = evaluate(clf, items, modes=modes, gain_sweep=sweep, progress=not args.no_progress)
    cue_desc = args.cues or (f"label {args.cue_from_label}" if args.cue_from_label else "none")
    title = (f"Guided evaluation: {args.images} ({len(items)} images), model {args.model}, cues: {cue_desc}, "
             f"wrong-cue rate {args.wrong_cue_rate:g}")
    return {"title": title, "outputs": write_outputs(report, args.out, title), **report.to_dict()}


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    code, result = run_main(main, args)
    if code == 0:
        print(Path(result["outputs"]["markdown"]).read_text())
        print("\n".join(f"{k}: {v}" for k, v in result["outputs"].items()))
    return code


if __name__ == "__main__":
    sys.exit(cli())
