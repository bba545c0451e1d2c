"""AudioSet label table: display names in checkpoint order and their ontology ids (mids)."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from audio.build_label_table import TABLE_PATH


@lru_cache(maxsize=1)
def audioset_labels() -> tuple[tuple[str, str], ...]:
    """The 527 AudioSet labels as `(mid, display_name)` pairs, in the order of the AudioSet AST checkpoints."""
    rows = []
    with open(TABLE_PATH, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if not line.startswith("#")]
    if lines[0] != "mid\tdisplay_name":
        raise ValueError(f"{TABLE_PATH}: expected header 'mid<TAB>display_name', got {lines[0]!r}")
    for line in lines[1:]:
        mid, name = line.split("\t")
        rows.append((mid, name))
    return tuple(rows)


def audioset_mids(labels: Sequence[str]) -> tuple[str | None, ...]:
    """AudioSet mids for `labels` when every label is an AudioSet display name, else `None` for each label.

    All-or-nothing on purpose: a checkpoint whose labels are AudioSet's (all 527 or a subset) gets mids; a
    checkpoint with its own label set (e.g. speech commands) gets none, even if one name happens to match.
    """
    mid_by_name = {name: mid for mid, name in audioset_labels()}
    if all(label in mid_by_name for label in labels):
        return tuple(mid_by_name[label] for label in labels)
    return tuple(None for _ in labels)
