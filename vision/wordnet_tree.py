"""A 2-level ImageNet-1k class tree (WordNet parent, then class) from the imagenet-superclass files.

`superclass.txt` (line i: superclass id of ImageNet class i, the direct WordNet parent) and
`superclass_names.txt` (line i: that parent's name) come from github.com/s-kumano/imagenet-superclass
(MIT). The tree is derived at build time and stored in the model's config, so nothing reads these
files at run time.
"""

from __future__ import annotations

from pathlib import Path

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
