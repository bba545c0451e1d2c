"""Curated YAML overrides: cue label or phrase -> explicit ImageNet classes / synsets and gain."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from xmcommon.ids import parse_ids

from .wordnet import WordNetHierarchy

ALLOWED_KEYS = {"classes", "synsets", "gain"}


@dataclass(frozen=True)
class Override:
    """One curated entry; empty ``classes`` means the cue has no ImageNet counterpart."""

    key: str
    classes: tuple[int, ...]
    gain: float | None = None


def default_overrides_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("overrides.yaml")))


def parse_overrides(data: object, hierarchy: WordNetHierarchy,
                    gain_range: tuple[float, float], source: str = "overrides") -> dict[str, Override]:
    """Validate a loaded YAML mapping; ValueError names the entry and what was expected."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping of cue -> entry, got {type(data).__name__}")
    out: dict[str, Override] = {}
    for key, entry in data.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f"{source}: cue key {key!r} must be a non-empty string")
        entry = entry or {}
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: entry {key!r} must be a mapping with {sorted(ALLOWED_KEYS)}")
        unknown = set(entry) - ALLOWED_KEYS
        if unknown:
            raise ValueError(f"{source}: entry {key!r} has unknown fields {sorted(unknown)}; "
                             f"expected {sorted(ALLOWED_KEYS)}")
        items = entry.get("classes") or []
        if not isinstance(items, list) or any(isinstance(i, bool) or not isinstance(i, int | str) for i in items):
            raise ValueError(f"{source}: entry {key!r}: classes must be a list of indices or ranges like '281-285', "
                             f"got {items!r}")
        classes = set(parse_ids(items, what=f"{source}: entry {key!r}: classes", limit=len(hierarchy.classes)))
        for synset in entry.get("synsets") or []:
            try:
                under = hierarchy.classes_under(str(synset))
            except ValueError as err:
                raise ValueError(f"{source}: entry {key!r}: {err}") from None
            if not under:
                raise ValueError(f"{source}: entry {key!r}: synset {synset!r} has no class of this model")
            classes.update(under)
        gain = entry.get("gain")
        if gain is not None:
            lo, hi = gain_range
            if isinstance(gain, bool) or not isinstance(gain, int | float) or not lo <= gain <= hi:
                raise ValueError(f"{source}: entry {key!r}: bad gain {gain!r}, expected a number in [{lo}, {hi}]")
            gain = float(gain)
        norm = " ".join(key.lower().split())
        if norm in out:
            raise ValueError(f"{source}: cue {key!r} is listed twice")
        out[norm] = Override(norm, tuple(sorted(classes)), gain)
    return out


def load_overrides(path: str | Path, hierarchy: WordNetHierarchy,
                   gain_range: tuple[float, float]) -> dict[str, Override]:
    """Read and validate an overrides YAML file (``yaml.safe_load``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"overrides file {path} not found")
    return parse_overrides(yaml.safe_load(path.read_text(encoding="utf-8")), hierarchy, gain_range, str(path))
