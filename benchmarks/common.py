"""What every benchmark shares, written once: timing, Markdown tables, the machine line, JSON output, and the
scoring helpers of the photo benchmarks (``default_model``, ``default_sweep``).

Timing: :func:`interleaved_timings` calls each function once to warm up, then ``runs`` rounds in which every
function runs once in turn, so that a load drift on a shared machine hits all of them alike; it reports per
function the median wall-clock and process-CPU milliseconds (:class:`Timing`). :func:`timing` is the same
for one function.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vision.eval.metrics import topk_accuracy
from xmcommon.cli import to_json
from xmcommon.files import atomic_write_text

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # the read-only data at hand (never copied)
CLOCKS = ("wall", "cpu")  # wall: time.perf_counter (latency); cpu: time.process_time (all threads of the process)
CAT_CLASSES = (281, 282, 283, 284, 285)  # the ImageNet domestic cats: the paper's "meow" cutout


# ------------------------------------------------------------------------------------------------ timing
@dataclass(frozen=True)
class Timing:
    """Medians over ``runs`` timed calls of one function, in milliseconds."""

    wall_ms: float
    cpu_ms: float  # process CPU time: summed over the process's threads, so above wall_ms when several run
    runs: int

    def ms(self, clock: str = "wall") -> float:
        """The median of ``clock`` (one of :data:`CLOCKS`)."""
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        return self.wall_ms if clock == "wall" else self.cpu_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interleaved_timings(fns: Mapping[str, Callable[[], object]], runs: int, *, warmup: int = 1,
                        setup: Callable[[], object] | None = None) -> dict[str, Timing]:
    """Per function, the median time of ``runs`` calls, the functions taking turns within each round.

    Each function is first called ``warmup`` times (untimed). ``setup``, when given, runs untimed before
    every call (e.g. to empty a cache so that each call measures a cold path).
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if not fns:
        raise ValueError("nothing to time: no functions given")
    for fn in fns.values():
        for _ in range(warmup):
            if setup is not None:
                setup()
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            if setup is not None:
                setup()
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    return {name: Timing(1e3 * statistics.median(wall[name]), 1e3 * statistics.median(cpu[name]), runs)
            for name in fns}


def timing(fn: Callable[[], object], runs: int, *, warmup: int = 1,
           setup: Callable[[], object] | None = None) -> Timing:
    """:func:`interleaved_timings` of one function."""
    return interleaved_timings({"fn": fn}, runs, warmup=warmup, setup=setup)["fn"]


# ------------------------------------------------------------------------------------------------ reports
def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table. ``align``: one letter per column, ``l`` / ``r`` / ``c`` (default: all left).

    Cells are written with ``str``; ``None`` is an empty cell.
    """
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - set("lrc"):
        raise ValueError(f"align must be one of l/r/c per column ({len(header)}), got {align!r}")
    rule = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule[a] for a in align) + "|"]
    for row in rows:
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"table row {row} has {len(row)} cells, the header {len(header)}")
        lines.append("| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |")
    return "\n".join(lines)


def cell(value: Any, spec: str = "", suffix: str = "") -> str | None:
    """``value`` formatted by ``spec`` with ``suffix`` for a table cell; ``None`` (an empty cell) stays ``None``."""
    return None if value is None else f"{format(value, spec)}{suffix}"


def machine() -> dict[str, Any]:
    """Where the numbers were measured: torch version and threads, CPUs, the 1-minute load average."""
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 2),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def machine_line(info: Mapping[str, Any]) -> str:
    """:func:`machine` as one line for a report."""
    gpu = f", GPU {info['cuda']}" if info.get("cuda") else ""
    return (f"torch {info['torch']}, {info['threads']} torch threads, {info['cpus']} CPUs "
            f"(load average {info['load_average']:.1f}){gpu}")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json FILE``: also write the result as JSON (see :func:`write_json`)."""
    parser.add_argument("--json", metavar="FILE", help="also write the result (rows included) to this JSON file")


def write_json(path: str | os.PathLike | None, result: Any) -> None:
    """Write ``result`` as strict JSON to ``path`` (atomically); nothing when ``path`` is None."""
    if path is not None:
        atomic_write_text(Path(path), to_json(result, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------ photos
def superclass_groups(tree: Mapping[str, Any], class_ids: Sequence[int]) -> dict[str, list[int]]:
    """Superclass name -> its class ids, from a 2-level tree (leaves are output positions into ``class_ids``)."""
    groups = {}
    for node in tree["children"]:
        if not isinstance(node, Mapping) or any(not isinstance(c, int) for c in node["children"]):
            raise ValueError("expected a 2-level tree: superclasses whose children are classes")
        groups[node["name"]] = [class_ids[i] for i in node["children"]]
    return groups


def within_groups(scores: torch.Tensor, targets: torch.Tensor, groups: Iterable[Sequence[int]]) -> torch.Tensor:
    """``scores`` with every column outside the row's target group set to -inf.

    Its top-1 is the argmax within the photo's group: what that group's cutout outputs (cutouts are exact).
    Columns are class ids (a 1000-class ImageNet model).
    """
    group_of = {c: list(members) for members in groups for c in members}
    masked = torch.full_like(scores, float("-inf"))
    for row, target in enumerate(targets.tolist()):
        members = group_of[target]
        masked[row, members] = scores[row, members]
    return masked


def top1(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 accuracy (a fraction), by :func:`vision.eval.metrics.topk_accuracy`."""
    return topk_accuracy(scores, targets, (1,))[1]
