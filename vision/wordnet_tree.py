"""2-level ImageNet-1k class trees (WordNet group, then class), derived at build time.

`superclass_tree`: the direct WordNet parents from the imagenet-superclass files. `wordnet_group_tree`:
coarser WordNet groups under a size cap, from a WordNet noun table (such as the one the mappings
package ships as data, read by path). `superclass.txt` (line i: superclass id of ImageNet class i,
the direct WordNet parent) and `superclass_names.txt` (line i: that parent's name) come from
github.com/s-kumano/imagenet-superclass (MIT). A tree is stored in the model's config, so nothing
reads these files at run time.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from timm.data import ImageNetInfo

from .hierarchy import Hierarchy, Tree

NUM_IMAGENET_CLASSES = 1000


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"superclass file {path} does not exist")
    lines = path.read_text().splitlines()
    if len(lines) != NUM_IMAGENET_CLASSES:
        raise ValueError(f"{path}: expected {NUM_IMAGENET_CLASSES} lines (one per ImageNet class), got {len(lines)}")
    return lines


def superclass_tree(superclass_txt: str | Path, names_txt: str | Path | None = None) -> Tree:
    """Root -> one node per WordNet parent (named by its first lemma) -> its ImageNet class indices.

    Superclasses are ordered by id; a name shared by two different ids gets its id appended.
    `names_txt` defaults to `superclass_names.txt` next to `superclass_txt`.
    """
    superclass_txt = Path(superclass_txt)
    names_txt = Path(names_txt) if names_txt is not None else superclass_txt.with_name("superclass_names.txt")
    ids_text, names = _read_lines(superclass_txt), _read_lines(names_txt)
    try:
        ids = [int(line) for line in ids_text]
    except ValueError as err:
        raise ValueError(f"{superclass_txt}: every line must be an integer superclass id ({err})") from err
    members: dict[int, list[int]] = {}
    lemma: dict[int, str] = {}
    for class_index, (sid, name) in enumerate(zip(ids, names)):
        members.setdefault(sid, []).append(class_index)
        first = name.split(",")[0].strip()
        if lemma.setdefault(sid, first) != first:
            raise ValueError(f"{names_txt}: superclass {sid} is named both {lemma[sid]!r} and {first!r}")
    taken = [lemma[sid] for sid in members]
    children = [
        {"name": lemma[sid] if taken.count(lemma[sid]) == 1 else f"{lemma[sid]} ({sid})", "children": members[sid]}
        for sid in sorted(members)
    ]
    return Hierarchy({"name": "root", "children": children}, NUM_IMAGENET_CLASSES).tree


def wordnet_group_tree(wordnet_json: str | Path, max_classes: int, min_classes: int = 1) -> Tree:
    """Root -> WordNet groups of at most `max_classes` ImageNet classes -> their class indices.

    `wordnet_json` is a WordNet noun table ``{"synsets": {wnid: {"lemmas": [...], "parents": [wnid, ...]}}}``
    covering the 1000 ImageNet-1k wnids and their hypernyms (e.g. `mappings/data/wordnet_imagenet.json`).
    Each class follows its first-parent chain up to the root; its group is the highest synset on that chain
    whose first-parent subtree holds at most `max_classes` classes. Groups of fewer than `min_classes`
    classes that share a parent synset are then merged (largest first, each merged group at most
    `max_classes`) into groups named "<parent> (other)", which evens out the group sizes. Groups are
    ordered by their first class and named by their first lemma (the wnid appended when two share a name).
    """
    if max_classes < 1:
        raise ValueError(f"max_classes={max_classes}: expected a positive number of classes per group")
    if not 1 <= min_classes <= max_classes:
        raise ValueError(f"min_classes={min_classes}: expected 1 <= min_classes <= max_classes={max_classes}")
    synsets = _read_wordnet(Path(wordnet_json))
    chains = [_first_parent_chain(wnid, synsets, wordnet_json) for wnid in ImageNetInfo().label_names()]
    size = Counter(synset for chain in chains for synset in chain)
    members: dict[str, list[int]] = {}
    parent: dict[str, str | None] = {}
    for class_index, chain in enumerate(chains):
        top = max(i for i, synset in enumerate(chain) if size[synset] <= max_classes)
        members.setdefault(chain[top], []).append(class_index)
        parent[chain[top]] = chain[top + 1] if top + 1 < len(chain) else None
    lemma = {wnid: synsets[wnid]["lemmas"][0].replace("_", " ") for wnid in set(members) | set(parent.values()) - {None}}
    groups = [(lemma[wnid], wnid, classes) for wnid, classes in members.items()
              if len(classes) >= min_classes or parent[wnid] is None]
    small: dict[str, list[tuple[str, list[int]]]] = {}
    for wnid, classes in members.items():
        if len(classes) < min_classes and parent[wnid] is not None:
            small.setdefault(parent[wnid], []).append((wnid, classes))
    for up, siblings in small.items():
        if len(siblings) == 1:
            wnid, classes = siblings[0]
            groups.append((lemma[wnid], wnid, classes))
            continue
        merged = _pack([classes for _, classes in siblings], max_classes)
        for i, classes in enumerate(merged):
            tag = "other" if len(merged) == 1 else f"other {i + 1}"
            groups.append((f"{lemma[up]} ({tag})", up, sorted(classes)))
    taken = Counter(name for name, _, _ in groups)
    children = [{"name": name if taken[name] == 1 else f"{name} ({wnid})", "children": classes}
                for name, wnid, classes in sorted(groups, key=lambda group: group[2][0])]
    return Hierarchy({"name": "root", "children": children}, NUM_IMAGENET_CLASSES).tree


def _pack(groups: list[list[int]], max_classes: int) -> list[list[int]]:
    """Consecutive packs of the groups, largest first, each pack at most `max_classes` classes."""
    packs: list[list[int]] = [[]]
    for classes in sorted(groups, key=lambda g: (-len(g), g[0])):
        if len(packs[-1]) + len(classes) > max_classes:
            packs.append([])
        packs[-1] += classes
    return packs


def _read_wordnet(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"WordNet table {path} does not exist")
    synsets = json.loads(path.read_text()).get("synsets")
    if not isinstance(synsets, dict):
        raise ValueError(f"{path}: expected a JSON object with a 'synsets' table")
    return synsets


def _first_parent_chain(wnid: str, synsets: dict, path: str | Path) -> list[str]:
    """`wnid` and its first-parent hypernyms up to the root."""
    chain = [wnid]
    while chain[-1] in synsets and synsets[chain[-1]]["parents"]:
        chain.append(synsets[chain[-1]]["parents"][0])
    if chain[-1] not in synsets:
        raise ValueError(f"{path}: synset {chain[-1]} (on the hypernym chain of {wnid}) is missing")
    return chain
