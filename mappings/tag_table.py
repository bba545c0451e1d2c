"""Write the tag decision table of an audio tagger's label set (for torch-free decisions, ``mappings.tag_decisions``).

    HF_HUB_OFFLINE=1 python -m mappings.tag_table --audio-model yamnet --out table.json

``--audio-model`` is a packaged tagger of the ``audio`` package ("yamnet") or a model directory holding the
tagger's ``labels.tsv`` (``mid<TAB>display_name`` rows, as ``AudioTagger.save_pretrained`` writes them). The
label table is read as a file: ``mappings`` does not import ``audio`` (the one-way import graph).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from xmcommon.cli import exit_process, run_cli

from .mapper import CueMapper
from .tag_decisions import TagDecisionTable

LABELS_FILE = "labels.tsv"
PACKAGED = {"yamnet": ("audio", "yamnet/weights")}  # name -> (package, folder of its labels.tsv)


def tagger_labels(name_or_dir: str | os.PathLike) -> tuple[tuple[str, str], ...]:
    """The ``(mid, display_name)`` labels of a packaged tagger or a model directory, in the tagger's order."""
    if str(name_or_dir) in PACKAGED:
        package, folder = PACKAGED[str(name_or_dir)]
        spec = importlib.util.find_spec(package)  # a top-level package's location, without importing it
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"audio model {name_or_dir!r}: the {package!r} package is not installed")
        path = Path(spec.submodule_search_locations[0]) / folder / LABELS_FILE
    else:
        path = Path(name_or_dir).expanduser() / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"audio model {str(name_or_dir)!r}: expected {', '.join(PACKAGED)} or a model "
                                f"directory holding {LABELS_FILE}; {path} not found")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row and not row[0].startswith("#")]
    if not rows or rows[0] != ["mid", "display_name"] or any(len(row) != 2 for row in rows):
        raise ValueError(f"{path}: expected a 'mid<TAB>display_name' header and rows")
    return tuple((mid, name) for mid, name in rows[1:])


def build_table(mapper: CueMapper, labels: Sequence[tuple[str, str]], tagger: str = "") -> TagDecisionTable:
    """The table of ``labels`` (``(mid, display_name)``, in the tagger's order) as ``mapper`` decides them."""
    unknown = [f"{mid} {name}" for mid, name in labels if mapper.ontology.name_of(mid) is None]
    if unknown:
        raise ValueError(f"tagger labels {unknown[:3]} are not AudioSet labels: expected AudioSet mids")
    return TagDecisionTable([mapper.tag_label(mid) for mid, _ in labels], mapper.config.tag_rules,
                            wnids=[c.wnid for c in mapper.hierarchy.classes], tagger=tagger)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-model", default="yamnet", help="packaged tagger name or model directory")
    parser.add_argument("--out", type=Path, required=True, help="the table's JSON file")
    parser.add_argument("--cache-dir", default=None, help="embedding cache (default: the user cache dir)")
    return parser


def main(args: argparse.Namespace) -> dict:
    labels = tagger_labels(args.audio_model)
    table = build_table(CueMapper.default(cache_dir=args.cache_dir), labels, tagger=str(args.audio_model))
    table.save(args.out)
    return {"out": str(args.out), "tagger": table.tagger, "labels": len(table.labels),
            "mapped": sum(bool(label.classes) for label in table.labels),
            "generic": sum(label.generic for label in table.labels), "rules": table.to_dict()["rules"]}


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    exit_process(cli())
