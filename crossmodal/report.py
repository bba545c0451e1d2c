"""The report of a guided evaluation: Markdown, JSON, CSV and plots (accuracy vs compute, reliability, gains)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from xmcommon.cli import to_json
from xmcommon.files import atomic_write, atomic_write_text

from .evaluation import EvalReport


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f} %"


def markdown(report: EvalReport, title: str) -> str:
    """The Markdown report: summary per mode (accuracy, calibration, cost), cue statistics, gain sweep."""
    lines = [f"# {title}", "", "| mode | images | top-1 | top-5 | top-1 right cue | top-1 wrong cue | ECE "
             "| mean confidence | mean confidence, wrong cue | mean params | mean GMACs | latency ms (median) "
             "| cutout lookup/build ms | fallback rate |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report.summary:
        lines.append(f"| {s['mode']} | {s['images']} | {_pct(s['top1'])} | {_pct(s['top5'])} | "
                     f"{_pct(s['top1_right_cue'])} | {_pct(s['top1_wrong_cue'])} | {_pct(s['ece'])} | "
                     f"{_pct(s['mean_confidence'])} | {_pct(s['mean_confidence_wrong_cue'])} | "
                     f"{s['mean_params']:,.0f} | {s['mean_gmacs']:.3f} | {s['latency_ms']:.1f} | "
                     f"{s['select_ms']:.1f} | {_pct(s['fallback_rate'])} |")
    c = report.cues
    auroc = "" if c["agreement_auroc"] is None else f" Cue agreement separates right from misleading cues with " \
        f"AUROC {c['agreement_auroc']:.3f}."
    lines += ["", f"Cues: {c['images_with_cue']} images with a cue ({c['wrong_cues']} misleading), "
              f"{c['distinct_cues']} distinct, {c['confident_guides']} mapped confidently; the guide contains the "
              f"true class for {100 * c['guide_contains_label']:.1f} % of the images.{auroc} Cue -> guide: "
              f"{c['cue_to_guide_ms_per_distinct_cue']:.1f} ms per distinct cue, "
              f"{c['cue_to_guide_ms_amortized_per_image']:.1f} ms amortised per image; "
              f"mean cutout build {c['mean_cutout_build_ms']:.1f} ms. ECE: expected calibration error of the top-1 "
              "confidence, 15 bins."]
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
    for s in report.summary:
        paths[f"reliability_{s['mode']}"] = out / f"reliability_{s['mode'].replace('+', '_')}.png"
        _reliability_diagram(s, paths[f"reliability_{s['mode']}"])
    if report.gain_sweep:
        paths["gain_sweep"] = out / "gain_sweep.png"
        fig, ax = plt.subplots(figsize=(5, 4))
        for mode in ("attend", "cutout+attend"):
            pts = [(s["gain"], 100 * s["top1"]) for s in report.gain_sweep if s["mode"] == mode]
            ax.plot(*zip(*pts), marker="o", label=mode)
        ax.set(xlabel="attention gain (all levels)", ylabel="top-1 (%)", title="gain sweep")
        ax.legend()
        _save_figure(fig, paths["gain_sweep"])


def _reliability_diagram(summary: dict[str, Any], path: Path) -> None:
    """Accuracy against mean confidence per confidence bin (the diagonal is perfect calibration)."""
    import matplotlib.pyplot as plt

    bins = [b for b in summary["reliability"] if b["count"]]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
    ax.bar([b["lower"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge", alpha=0.7,
           edgecolor="black", label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="red", label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="top-1 confidence", ylabel="accuracy",
           title=f"{summary['mode']}: ECE {100 * summary['ece']:.1f} %")
    ax.legend(loc="upper left")
    _save_figure(fig, path)


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
