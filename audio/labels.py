"""AudioSet label table: display names in checkpoint order and their ontology ids (mids)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

from audio.build_label_table import TABLE_PATH


def read_table(path: str | os.PathLike) -> tuple[tuple[str, str], ...]:
    """The `(mid, display_name)` rows of a label table written by `build_label_table.write_table`."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if not line.startswith("#")]
    if not lines or lines[0] != "mid\tdisplay_name":
        raise ValueError(f"{path}: expected header 'mid<TAB>display_name', got {lines[0] if lines else None!r}")
    rows = [tuple(line.split("\t")) for line in lines[1:]]
    if bad := next((row for row in rows if len(row) != 2), None):
        raise ValueError(f"{path}: expected 'mid<TAB>display_name' rows, got {bad!r}")
    return tuple(rows)


@lru_cache(maxsize=1)
def audioset_labels() -> tuple[tuple[str, str], ...]:
    """The 527 AudioSet labels as `(mid, display_name)` pairs, in the order of the AudioSet AST checkpoints."""
    return read_table(TABLE_PATH)


def audioset_mids(labels: Sequence[str]) -> tuple[str | None, ...]:
    """AudioSet mids for `labels` when every label is an AudioSet display name, else `None` for each label.

    All-or-nothing on purpose: a checkpoint whose labels are AudioSet's (all 527 or a subset) gets mids; a
    checkpoint with its own label set (e.g. speech commands) gets none, even if one name happens to match.
    """
    mid_by_name = {name: mid for mid, name in audioset_labels()}
    if all(label in mid_by_name for label in labels):
        return tuple(mid_by_name[label] for label in labels)
    return tuple(None for _ in labels)
