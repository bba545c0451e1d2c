"""Evaluation sharded over torchrun processes, with a resumable per-image journal (JSON lines).

The work is a list of *units* (lists of image indices: a batch, or one image) that every process builds in the
same order; process ``r`` of ``W`` takes units ``r, r + W, ...``. A unit's images never depend on ``W``, so
every per-image record is the one a single process computes, and the gathered records (sorted by image index)
give the same report for any number of processes.

Each process appends its records to its own journal in the output folder (``per_image.jsonl`` for one
process, ``per_image.R-of-W.jsonl`` under torchrun): a header line with the evaluation's key, then one line
per image, flushed after every unit, so a kill loses at most the unit in progress. With ``resume`` the records
of every journal in the folder (whatever ``W`` wrote it) are kept and complete units are skipped; a torn last
line is ignored, and a journal written by a different evaluation (another key) is an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch
from tqdm import tqdm

from xmcommon.cli import to_json

from ..distributed import Dist, all_gather_objects, any_process, barrier

JOURNAL_GLOB = "per_image*.jsonl"
Record = dict[str, Any]
Compute = Callable[[Sequence[Sequence[int]]], Iterable[list[Record]]]


def journal_path(folder: Path, ctx: Dist) -> Path:
    """This process's journal in ``folder``."""
    name = "per_image.jsonl" if ctx.world_size == 1 else f"per_image.{ctx.rank}-of-{ctx.world_size}.jsonl"
    return folder / name


def fingerprint(value: Any) -> str:
    """A short stable digest of JSON-ready ``value`` (for a journal key that names many files)."""
    return hashlib.sha256(to_json(value, sort_keys=True).encode()).hexdigest()[:16]


def normalise(value: Any) -> Any:
    """``value`` as it reads back from the journal (strict JSON: tuples become lists, NaN becomes None)."""
    return json.loads(to_json(value))


def read_journal(path: Path, key: Any) -> dict[int, Record]:
    """The records of one journal by image index; a torn last line is ignored, another key is an error."""
    complete = path.read_text(encoding="utf-8").split("\n")[:-1]  # what follows the last newline is torn
    if not complete:
        return {}
    try:
        header = json.loads(complete[0])
        records = [json.loads(line) for line in complete[1:]]
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a per-image journal (bad JSON line: {err})") from None
    if not isinstance(header, dict) or header.get("journal") != key:
        raise ValueError(f"{path} was written by a different evaluation; give another output folder or drop --resume")
    return {int(r["index"]): r for r in records}


def _load_all(folder: Path, key: Any) -> dict[int, Record]:
    done: dict[int, Record] = {}
    for path in sorted(folder.glob(JOURNAL_GLOB)):
        done.update(read_journal(path, key))
    return done


def _open_journal(path: Path, key: Any, resume: bool) -> TextIO:
    """Open this process's journal for appending: keep its complete lines when resuming, else start afresh."""
    text = path.read_text(encoding="utf-8") if resume and path.is_file() else ""
    keep = text[: text.rfind("\n") + 1]  # drop a torn last line before appending after it
    handle = path.open("w", encoding="utf-8")
    handle.write(keep or to_json({"journal": key}) + "\n")
    handle.flush()
    return handle


def _until(units: Sequence[Sequence[int]], stop_after: int | None) -> list[Sequence[int]]:
    """The first units that hold ``stop_after`` images (all units without a limit)."""
    if stop_after is None:
        return list(units)
    out, images = [], 0
    for unit in units:
        if images >= stop_after:
            break
        out.append(unit)
        images += len(unit)
    return out


def run_sharded(units: Sequence[Sequence[int]], compute: Compute, *, key: Any, ctx: Dist,
                device: torch.device | None = None, folder: str | Path | None = None, resume: bool = False,
                stop_after: int | None = None, progress: bool = True, desc: str = "evaluate") -> list[Record] | None:
    """Every image's record, sorted by image index, computed by this process's share of ``units``.

    ``compute(units)`` yields, per unit in order, one record per image of the unit (a JSON-ready dict with an
    ``index``). ``folder`` keeps the journal (``None``: in memory only; ``resume`` needs a folder); ``key``
    (JSON-ready) identifies the evaluation. ``stop_after`` stops each process after that many images of
    this run (simulating an interruption): then every process returns ``None``. Progress shows on rank 0.
    """
    if stop_after is not None and stop_after < 0:
        raise ValueError(f"stop_after must be >= 0, got {stop_after}")
    if resume and folder is None:
        raise ValueError("resuming needs an output folder that holds the per-image journal")
    key = normalise(key)
    mine = list(units[ctx.rank :: ctx.world_size])
    wanted = {i for unit in mine for i in unit}
    done: dict[int, Record] = {}
    handle = None
    if folder is not None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if resume:
            done = _load_all(folder, key)
        elif ctx.is_main:
            for stale in folder.glob(JOURNAL_GLOB):
                stale.unlink()
        barrier(ctx)  # every process has read (or rank 0 removed) the journals before any is written
        handle = _open_journal(journal_path(folder, ctx), key, resume)
    kept = {i: r for i, r in done.items() if i in wanted}
    pending = [unit for unit in mine if not all(i in kept for i in unit)]
    todo = _until(pending, stop_after)
    try:
        bar = tqdm(total=sum(len(u) for u in todo), desc=desc, unit="img", disable=not (progress and ctx.is_main))
        with bar:
            for unit, records in zip(todo, compute(todo)):
                if sorted(r["index"] for r in records) != sorted(unit):
                    raise RuntimeError(f"records for images {[r['index'] for r in records]}, expected {list(unit)}")
                fresh = [normalise(r) for r in records if r["index"] not in kept]
                if handle is not None:
                    handle.write("".join(to_json(r) + "\n" for r in fresh))
                    handle.flush()
                kept.update((r["index"], r) for r in fresh)
                bar.update(len(unit))
    finally:
        if handle is not None:
            handle.close()
    if any_process(len(todo) < len(pending), ctx, device or torch.device("cpu")):
        return None
    records = [r for part in all_gather_objects(list(kept.values()), ctx) for r in part]
    return sorted(records, key=lambda r: r["index"])

