"""Evaluate a trained model: accuracy, Table-2-style cutouts, and the top-down attention gain sweep.

The library behind ``python -m vision.evaluate`` (:mod:`vision.evaluate`). Images are preprocessed with
the model's own data config (``model.data_config()``), metrics come from :mod:`vision.eval.metrics`.

Outputs in `--out`: `report.md` (Markdown tables), `results.json`, `per_class.csv`, `subsets.csv`,
`gains.csv` and `gain_curve.png`.

Subsets name output positions (`lower:0-4`) or come from a YAML file mapping names to lists of
positions (ints), class folder names / wnids (strings) or a range string ("0-4,7").
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from xmcommon.files import atomic_write_text
from xmcommon.ids import parse_ids

from ..baseline import TimmClassifier
from ..cost import measure
from ..data.folder import ClassSet, ImageFolderDataset, class_set, collate
from ..data.transforms import eval_transform
from ..distributed import resolve_device, setup_distributed
from ..io import load_model
from .metrics import hits_at_k, per_class_accuracy, rank
from .sharded import fingerprint, run_sharded


@dataclass(frozen=True)
class Accuracy:
    top1: float
    top5: float | None
    images: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SubsetResult:
    """One row of the cutout table: the full model and its cutout on the subset's images."""

    name: str
    positions: list[int]
    class_ids: list[int]
    images: int
    full_top1: float
    cutout_top1: float
    full_params: int
    cutout_params: int
    full_gmacs: float
    cutout_gmacs: float
    params_reduction_pct: float
    gmacs_reduction_pct: float
    cutout_max_logit_diff: float
    baseline_top1: float | None = None
    baseline_params: int | None = None
    baseline_gmacs: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GainSweep:
    """Top-1 with gain g on the true class's branch, for each g; best g (ties -> smaller g)."""

    gains: list[float]
    top1: list[float]
    best_gain: float
    best_top1: float
    baseline_top1: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EvalReport:
    model: str
    data: str
    accuracy: Accuracy
    per_class: list[dict]
    subsets: list[SubsetResult]
    gain_sweep: GainSweep | None

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "accuracy": self.accuracy.to_dict(), "per_class": self.per_class,
                "subsets": [s.to_dict() for s in self.subsets],
                "gain_sweep": self.gain_sweep.to_dict() if self.gain_sweep else None}


def _split_dir(data: Path, split: str) -> Path:
    if (data / split).is_dir():
        return data / split
    if not data.is_dir():
        raise FileNotFoundError(f"data folder {data} does not exist")
    return data


def dataset_for_model(model: nn.Module, folder: Path, transform) -> tuple[ImageFolderDataset, dict[str, int]]:
    """The ImageFolder at `folder` with targets = the model's output positions, and folder -> position.

    Wnid folders are matched by ImageNet index, other folders by class name; every folder must be
    one of the model's classes.
    """
    ids, names = model.class_ids, model.class_names
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"data folder {folder} has no class sub-folders")
    found = class_set(folders)
    by_id = {c: i for i, c in enumerate(ids)}
    by_name = {n: i for i, n in enumerate(names)}
    positions, unknown = [], []
    for folder_name, cid in zip(found.folders, found.class_ids):
        pos = by_id.get(cid) if found.imagenet else by_name.get(folder_name)
        (unknown.append(folder_name) if pos is None else positions.append(pos))
    if unknown:
        raise ValueError(f"class folders of {folder} that the model does not know: {', '.join(unknown[:10])}")
    # A ClassSet in the model's output order: a folder's target is its index here.
    order = sorted(range(len(found.folders)), key=lambda k: positions[k])
    ordered = ClassSet(tuple(found.folders[k] for k in order), tuple(ids[positions[k]] for k in order),
                       tuple(names[positions[k]] for k in order), found.imagenet)
    ds = ImageFolderDataset(folder, ordered, transform)
    remap = [positions[k] for k in order]
    ds.samples = [(p, remap[t]) for p, t in ds.samples]
    return ds, dict(zip(ordered.folders, remap))


def resolve_subsets(specs: Sequence[str], subsets_file: str | None, num_classes: int,
                    folder_positions: dict[str, int]) -> dict[str, list[int]]:
    """Subset name -> sorted output positions, from `name:0-4` specs and/or a YAML file."""
    raw: dict[str, object] = {}
    for spec in specs:
        if ":" not in spec:
            raise ValueError(f"subset {spec!r} must look like name:0-4 (name, colon, positions)")
        name, rng = spec.split(":", 1)
        raw[name] = rng
    if subsets_file:
        path = Path(subsets_file)
        if not path.is_file():
            raise FileNotFoundError(f"subsets file {path} does not exist")
        loaded = yaml.safe_load(path.read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"subsets file {path} must map subset names to class lists")
        raw.update(loaded)
    out = {}
    for name, value in raw.items():
        items = parse_ids(value, what=f"subset {name!r}") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise ValueError(f"subset {name!r} must be a non-empty list or range string, got {value!r}")
        positions = []
        for item in items:
            if isinstance(item, str):
                if item not in folder_positions:
                    raise ValueError(f"subset {name!r}: class folder {item!r} is not in the evaluation data")
                positions.append(folder_positions[item])
            elif isinstance(item, int) and 0 <= item < num_classes:
                positions.append(item)
            else:
                raise ValueError(f"subset {name!r}: {item!r} is not an output position 0..{num_classes - 1} or a class folder")
        if len(set(positions)) != len(positions):
            raise ValueError(f"subset {name!r} names a class twice")
        out[str(name)] = sorted(positions)
    return out


@dataclass(frozen=True)
class _SubsetPass:
    """What one subset adds to each batch: its cutout (and baseline) on the batch's images of its classes."""

    name: str
    positions: list[int]
    cutout: nn.Module
    column: torch.Tensor  # full-model position -> the cutout's output column (-1: not in the subset)
    restrict: list[int]  # the full model's columns of the cutout's classes, in the cutout's order
    baseline: nn.Module | None
    baseline_column: torch.Tensor | None


def _subset_pass(model: nn.Module, name: str, positions: list[int], baseline: nn.Module | None) -> _SubsetPass:
    _require_seqpar(model, "cutout evaluation")
    ids = model.class_ids
    sub = model.cutout([ids[p] for p in positions])
    column = torch.full((len(ids),), -1, dtype=torch.long)
    column[[ids.index(c) for c in sub.class_ids]] = torch.arange(len(sub.class_ids))
    baseline_column = None
    if baseline is not None:
        # matched by class name: a subset-trained model's ids are positions unless its folders are wnids
        names, base_names = model.class_names, list(baseline.class_names)
        if sorted(base_names) != sorted(names[p] for p in positions):
            raise ValueError(f"baseline for subset {name!r} has classes {base_names}, "
                             f"expected {[names[p] for p in positions]}")
        baseline_column = torch.full((len(ids),), -1, dtype=torch.long)
        baseline_column[positions] = torch.tensor([base_names.index(names[p]) for p in positions])
    return _SubsetPass(name, positions, sub, column, [ids.index(c) for c in sub.class_ids], baseline, baseline_column)


def _top1_hits(logits: torch.Tensor, targets: torch.Tensor) -> list[bool]:
    return (rank(logits, 1)[:, 0] == targets).tolist()


@torch.no_grad()
def _batch_records(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, indices: Sequence[int],
                   passes: Sequence[_SubsetPass], gains: Sequence[float], device: torch.device) -> list[dict]:
    """Per image of one batch: top-1/top-5 hits of the full model, of each subset's cutout and baseline (with the
    largest |full - cutout| logit difference) and, per gain, the top-1 hit with that gain on the true class."""
    images = images.to(device)
    logits = model(images).float().cpu()
    ranked = rank(logits, 5)
    top1, top5 = hits_at_k(ranked, targets, 1).tolist(), hits_at_k(ranked, targets, 5).tolist()
    records = [{"index": i, "target": t, "top1": a, "top5": b, "subsets": {}, "gains": []}
               for i, t, a, b in zip(indices, targets.tolist(), top1, top5)]
    for p in passes:
        rows = (p.column[targets] >= 0).nonzero().flatten()
        if rows.numel() == 0:
            continue
        sub_logits = p.cutout(images[rows.to(device)]).float().cpu()
        hits = _top1_hits(sub_logits, p.column[targets[rows]])
        diffs = (logits[rows][:, p.restrict] - sub_logits).abs().amax(1).tolist()
        base = ([None] * len(hits) if p.baseline is None else
                _top1_hits(p.baseline(images[rows.to(device)]).float().cpu(), p.baseline_column[targets[rows]]))
        for row, hit, diff, base_hit in zip(rows.tolist(), hits, diffs, base):
            entry = {"cutout_top1": hit, "logit_diff": diff}
            if base_hit is not None:
                entry["baseline_top1"] = base_hit
            records[row]["subsets"][p.name] = entry
    for g in gains:
        g_map = torch.ones(images.shape[0], _width(model), device=device)
        g_map[torch.arange(images.shape[0]), targets.to(device)] = g
        for record, hit in zip(records, _top1_hits(model(images, gains=g_map).float().cpu(), targets)):
            record["gains"].append(hit)
    return records


def _width(model: nn.Module) -> int:
    return len(model.class_ids)


def _percent(hits: Sequence[bool]) -> float:
    return 100.0 * sum(hits) / len(hits)


def _cost(model: nn.Module, input_size: int) -> tuple[int, float]:
    c = measure(model, input_size=(1, 3, input_size, input_size))
    return int(c.params), c.macs / 1e9


def _require_seqpar(model: nn.Module, what: str) -> None:
    if isinstance(model, TimmClassifier):
        raise ValueError(f"{what} needs a SeqPar model; {model.name} is a plain timm baseline")


def _subset_result(model: nn.Module, p: _SubsetPass, records: Sequence[dict], input_size: int) -> SubsetResult:
    """One row of the cutout table from the per-image records of the subset's images."""
    mine = [(r, r["subsets"][p.name]) for r in records if p.name in r["subsets"]]
    full_params, full_gmacs = _cost(model, input_size)
    cut_params, cut_gmacs = _cost(p.cutout, input_size)
    ids = model.class_ids
    result = dict(name=p.name, positions=p.positions, class_ids=[ids[q] for q in p.positions], images=len(mine),
                  full_top1=_percent([r["top1"] for r, _ in mine]), cutout_top1=_percent([e["cutout_top1"] for _, e in mine]),
                  full_params=full_params, cutout_params=cut_params, full_gmacs=full_gmacs, cutout_gmacs=cut_gmacs,
                  params_reduction_pct=100.0 * (cut_params - full_params) / full_params,
                  gmacs_reduction_pct=100.0 * (cut_gmacs - full_gmacs) / full_gmacs,
                  cutout_max_logit_diff=max(e["logit_diff"] for _, e in mine))
    if p.baseline is not None:
        b_params, b_gmacs = _cost(p.baseline, input_size)
        result.update(baseline_top1=_percent([e["baseline_top1"] for _, e in mine]), baseline_params=b_params,
                      baseline_gmacs=b_gmacs)
    return SubsetResult(**result)


def _gain_sweep(gains: Sequence[float], records: Sequence[dict], baseline_top1: float) -> GainSweep:
    """Top-1 when each image's true-class branch gets gain g (the paper's guided run), for each g."""
    top1 = [_percent([r["gains"][k] for r in records]) for k in range(len(gains))]
    best = max(range(len(gains)), key=lambda k: (top1[k], -gains[k]))
    return GainSweep([float(g) for g in gains], top1, float(gains[best]), top1[best], baseline_top1)


def _write_outputs(report: EvalReport, out: Path, input_size: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(report.to_dict(), indent=2))
    with open(out / "per_class.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["position", "class_id", "name", "images", "top1"])
        w.writeheader()
        w.writerows(report.per_class)
    if report.subsets:
        with open(out / "subsets.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(report.subsets[0].to_dict()))
            w.writeheader()
            w.writerows([{**s.to_dict(), "positions": " ".join(map(str, s.positions)),
                          "class_ids": " ".join(map(str, s.class_ids))} for s in report.subsets])
    acc = report.accuracy
    lines = [f"# Evaluation of `{report.model}`", "", f"Data: `{report.data}`, {acc.images} images, {input_size} px.", "",
             "| metric | value |", "| --- | --- |", f"| top-1 | {acc.top1:.2f} % |"]
    if acc.top5 is not None:
        lines.append(f"| top-5 | {acc.top5:.2f} % |")
    if report.subsets:
        lines += ["", "## Cutouts (Table 2 style)", "",
                  "| subset | images | full top-1 | cutout top-1 | params full | params cutout | params red. "
                  "| GMACs full | GMACs cutout | GMACs red. | max logit diff | baseline top-1 |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s in report.subsets:
            base = (f"{s.baseline_top1:.2f} ({s.baseline_params:,} params, {s.baseline_gmacs:.4f} GMACs)"
                    if s.baseline_top1 is not None else "NA")
            lines.append(f"| {s.name} | {s.images} | {s.full_top1:.2f} | {s.cutout_top1:.2f} | {s.full_params:,} | "
                         f"{s.cutout_params:,} | {s.params_reduction_pct:+.2f} % | {s.full_gmacs:.4f} | {s.cutout_gmacs:.4f} | "
                         f"{s.gmacs_reduction_pct:+.2f} % | {s.cutout_max_logit_diff:.1e} | {base} |")
    if report.gain_sweep:
        gs = report.gain_sweep
        with open(out / "gains.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["gain", "top1"])
            w.writerows(zip(gs.gains, gs.top1))
        lines += ["", "## Top-down attention (true-class gain)", "", "| gain | top-1 |", "| ---: | ---: |"]
        lines += [f"| {g:g}{' (best)' if g == gs.best_gain else ''} | {t:.2f} |" for g, t in zip(gs.gains, gs.top1)]
        lines += ["", f"Best gain {gs.best_gain:g}: top-1 {gs.best_top1:.2f} % (unguided {gs.baseline_top1:.2f} %)."]
        _plot_gains(gs, out / "gain_curve.png")
    lines += ["", "Per-class accuracy: `per_class.csv`; everything: `results.json`.", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))


def _plot_gains(gs: GainSweep, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(gs.gains, gs.top1, marker="o")
    ax.axhline(gs.baseline_top1, color="gray", linestyle="--", label="unguided")
    ax.scatter([gs.best_gain], [gs.best_top1], color="red", zorder=3, label=f"best g={gs.best_gain:g}")
    ax.set_xlabel("gain on the true class's branch")
    ax.set_ylabel("top-1 (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(model_dir: str | Path, data: str | Path, *, split: str = "val", subsets: Sequence[str] = (),
             subsets_file: str | None = None, gains: Sequence[float] = (), baselines: dict[str, str] | None = None,
             input_size: int | None = None, batch_size: int = 64, workers: int = 2, device: str = "cpu",
             out: str | Path | None = None, resume: bool = False, stop_after: int | None = None,
             progress: bool = False) -> EvalReport | None:
    """Evaluate the model in `model_dir` on `data` (a folder with `split/` or a class-folder tree).

    Under torchrun the batches are shared out over the processes (:mod:`vision.eval.sharded`); the report is
    the one a single process gives, and rank 0 writes it. With `out` the per-image records go to
    `out/per_image*.jsonl` as they are computed; `resume` skips the images found there. `stop_after` stops each
    process after that many images (returns None): a simulated interruption.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ctx = setup_distributed(_device_kind(device))
    dev = resolve_device(device, ctx, "--device")
    model = load_model(model_dir)
    model.to(dev).eval()
    data_config = model.data_config()
    if input_size:
        data_config["input_size"] = (3, input_size, input_size)
    size = data_config["input_size"][-1]
    ds, folder_positions = dataset_for_model(model, _split_dir(Path(data), split), eval_transform(data_config))
    if not ds.samples:
        raise ValueError("no images to evaluate")
    ids, names = model.class_ids, model.class_names
    named = resolve_subsets(subsets, subsets_file, len(ids), folder_positions)
    baselines = baselines or {}
    unknown = set(baselines) - set(named)
    if unknown:
        raise ValueError(f"baselines given for unknown subsets {sorted(unknown)}; subsets are {sorted(named)}")
    present = {t for _, t in ds.samples}
    for name, pos in named.items():
        if present.isdisjoint(pos):
            raise ValueError(f"subset {name!r} has no images in the evaluation data")
    if gains:
        _require_seqpar(model, "the gain sweep")
    passes = [_subset_pass(model, name, pos, load_model(baselines[name]).to(dev).eval() if name in baselines else None)
              for name, pos in named.items()]
    for p in passes:
        p.cutout.to(dev).eval()
    units = [list(range(s, min(s + batch_size, len(ds)))) for s in range(0, len(ds), batch_size)]
    key = {"evaluator": "vision.evaluate", "model": str(model_dir), "data": str(data), "split": split,
           "samples": fingerprint([(os.path.relpath(p, ds.root), t) for p, t in ds.samples]), "subsets": named,
           "baselines": baselines, "gains": [float(g) for g in gains], "input_size": size, "batch_size": batch_size}

    def compute(todo: Sequence[Sequence[int]]):
        loader = torch.utils.data.DataLoader(ds, batch_sampler=todo, num_workers=workers, collate_fn=collate)
        for unit, (images, targets, _) in zip(todo, loader):
            yield _batch_records(model, images, targets, unit, passes, gains, dev)

    records = run_sharded(units, compute, key=key, ctx=ctx, device=dev, folder=out, resume=resume,
                          stop_after=stop_after, progress=progress)
    if records is None:
        return None
    targets = torch.tensor([r["target"] for r in records])
    acc = Accuracy(_percent([r["top1"] for r in records]),
                   _percent([r["top5"] for r in records]) if len(ids) > 10 else None, len(records))
    class_top1 = per_class_accuracy(targets, torch.tensor([r["top1"] for r in records]), len(ids))
    counts = torch.bincount(targets, minlength=len(ids)).tolist()
    per_class = [{"position": pos, "class_id": cid, "name": name, "images": counts[pos],
                  "top1": None if class_top1[pos] is None else 100.0 * class_top1[pos]}
                 for pos, (cid, name) in enumerate(zip(ids, names))]
    subset_results = [_subset_result(model, p, records, size) for p in passes]
    sweep = _gain_sweep(list(gains), records, acc.top1) if gains else None
    report = EvalReport(str(model_dir), str(data), acc, per_class, subset_results, sweep)
    if out is not None and ctx.is_main:
        _write_outputs(report, Path(out), size)
    return report


def _device_kind(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
