"""Building class trees for NHL models from what the mappings know: WordNet, and class-text embeddings.

A tree is plain data, ``{"name": str, "children": [subtree | class index, ...]}``, in the one format
that ``vision.Hierarchy`` validates and lays out (this package does not import ``vision``). WordNet
trees name nodes by synset (``"domestic_cat.n.01"``) or, for :func:`wordnet_group_tree`, by first lemma
(``"hunting dog"``); clustering trees name them ``"cluster.L<level>.<n>"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from statistics import median

import numpy as np

from .wordnet import WordNetHierarchy

ROOT = "root"


def _node(name: str, children: list) -> dict:
    return {"name": name, "children": children}


def wordnet_tree(hierarchy: WordNetHierarchy, levels: int = 2, *, depths: Sequence[int] | None = None,
                 choose: dict[int, str] | None = None) -> dict:
    """A tree with ``levels`` levels below the root, the last being the classes.

    ``levels=1`` is flat (PHL); ``levels=2`` groups classes by their WordNet parent
    (:meth:`WordNetHierarchy.parent_groups`); each further level groups the nodes below it by their
    primary-path ancestor at WordNet depth ``depths[j]`` (default: evenly spaced up to the median
    group depth), never the node itself. A synset needed at two levels keeps its plain name at the
    lowest one and gets ``"#L<level>"`` appended above.
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if levels == 1:
        return _node(ROOT, [c.index for c in hierarchy.classes])
    groups = hierarchy.parent_groups(choose)
    n_upper = levels - 2
    group_depth = {g: len(hierarchy.primary_path(g)) - 1 for g in groups}
    if depths is None:
        top = median(group_depth.values())
        depths = [max(1, round(top * (j + 1) / (n_upper + 1))) for j in range(n_upper)]
    depths = list(depths)
    if len(depths) != n_upper or depths != sorted(set(depths)) or (depths and depths[0] < 1):
        raise ValueError(f"depths {depths} must be {n_upper} strictly increasing WordNet depths >= 1")
    # children of each node per level, built bottom-up: level n_upper+1 = groups
    layer: dict[str, list] = {g: list(members) for g, members in groups.items()}
    layers = [layer]
    for depth in reversed(depths):
        upper: dict[str, list] = {}
        for name in layer:
            path = hierarchy.primary_path(name.split("#")[0])
            upper.setdefault(path[min(depth, len(path) - 2)], []).append(name)
        layers.append(upper)
        layer = upper
    seen: set[str] = set()
    renamed: list[dict[str, str]] = []
    for level, layer in enumerate(layers):  # lowest level first keeps plain names
        names = {n: (n if n not in seen else f"{n}#L{levels - 1 - level}") for n in layer}
        seen.update(names.values())
        renamed.append(names)

    def build(level: int, name: str) -> dict:
        children = layers[level][name]
        if level == 0:
            return _node(renamed[0][name], sorted(children))
        return _node(renamed[level][name], [build(level - 1, c) for c in sorted(children, key=_first_class(layers, level - 1))])

    top_layer = len(layers) - 1
    roots = sorted(layers[top_layer], key=_first_class(layers, top_layer))
    return _node(ROOT, [build(top_layer, n) for n in roots])


def _first_class(layers: list[dict[str, list]], level: int):
    """Sort key: the smallest class index below a node (keeps trees in ImageNet order)."""
    def key(name: str) -> int:
        lvl, items = level, [name]
        while lvl >= 0:
            items = [c for n in items for c in layers[lvl][n]]
            lvl -= 1
        return min(items)
    return key


def cluster_tree(embeddings: np.ndarray, levels: int = 3, sizes: Sequence[int] | None = None) -> dict:
    """A tree from Ward clustering of class embeddings, cut into nested levels (deterministic).

    ``sizes[j]`` is the number of nodes at level ``j + 1`` (default ``round(n ** ((j + 1) / levels))``);
    nested cuts of one dendrogram guarantee a proper tree.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    emb = np.asarray(embeddings, dtype=np.float64)
    n = emb.shape[0]
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if levels == 1:
        return _node(ROOT, list(range(n)))
    sizes = list(sizes) if sizes is not None else [round(n ** ((j + 1) / levels)) for j in range(levels - 1)]
    if len(sizes) != levels - 1 or sizes != sorted(sizes) or sizes[0] < 1 or sizes[-1] >= n:
        raise ValueError(f"sizes {sizes} must be {levels - 1} non-decreasing cluster counts in [1, {n - 1}]")
    link = linkage(emb, method="ward")
    labels = [fcluster(link, t=k, criterion="maxclust") for k in sizes]

    def build(level: int, members: list[int]) -> list:
        if level == len(labels):
            return sorted(members)
        groups: dict[int, list[int]] = {}
        for m in members:
            groups.setdefault(int(labels[level][m]), []).append(m)
        ordered = sorted(groups.values(), key=min)
        return [_node(f"cluster.L{level + 1}.{min(g):04d}", build(level + 1, g)) for g in ordered]

    return _node(ROOT, build(0, list(range(n))))


def wordnet_group_tree(hierarchy: WordNetHierarchy, max_classes: int, min_classes: int = 1) -> dict:
    """Root -> WordNet groups of at most ``max_classes`` classes -> their class indices.

    Each class follows its first-parent chain up to the root; its group is the highest synset on that chain
    whose first-parent subtree holds at most ``max_classes`` classes. Groups of fewer than ``min_classes``
    classes that share a parent synset are then merged (largest first, each merged group at most
    ``max_classes``) into groups named "<parent> (other)", which evens out the group sizes. Groups are
    ordered by their first class and named by their first lemma (the wnid appended when two share a name).
    ``(100, 20)`` gives the 30 groups of 3-90 classes of the packaged default model.
    """
    if max_classes < 1:
        raise ValueError(f"max_classes={max_classes}: expected a positive number of classes per group")
    if not 1 <= min_classes <= max_classes:
        raise ValueError(f"min_classes={min_classes}: expected 1 <= min_classes <= max_classes={max_classes}")
    chains = [tuple(reversed(hierarchy.primary_path(c.index))) for c in hierarchy.classes]  # class first
    size = Counter(synset for chain in chains for synset in chain)
    members: dict[str, list[int]] = {}
    parent: dict[str, str | None] = {}
    for index, chain in enumerate(chains):
        top = max(i for i, synset in enumerate(chain) if size[synset] <= max_classes)
        members.setdefault(chain[top], []).append(index)
        parent[chain[top]] = chain[top + 1] if top + 1 < len(chain) else None
    lemma = {s: hierarchy.lemmas(s)[0].replace("_", " ") for s in set(members) | set(parent.values()) - {None}}
    groups = [(lemma[s], s, classes) for s, classes in members.items()
              if len(classes) >= min_classes or parent[s] is None]
    small: dict[str, list[tuple[str, list[int]]]] = {}
    for s, classes in members.items():
        if len(classes) < min_classes and parent[s] is not None:
            small.setdefault(parent[s], []).append((s, classes))
    for up, siblings in small.items():
        if len(siblings) == 1:
            (s, classes), = siblings
            groups.append((lemma[s], s, classes))
            continue
        merged = _pack([classes for _, classes in siblings], max_classes)
        for i, classes in enumerate(merged):
            tag = "other" if len(merged) == 1 else f"other {i + 1}"
            groups.append((f"{lemma[up]} ({tag})", up, sorted(classes)))
    taken = Counter(name for name, _, _ in groups)
    children = [_node(name if taken[name] == 1 else f"{name} ({hierarchy.wnid(synset)})", classes)
                for name, synset, classes in sorted(groups, key=lambda group: group[2][0])]
    return _node(ROOT, children)


def _pack(groups: list[list[int]], max_classes: int) -> list[list[int]]:
    """Consecutive packs of the groups, largest first, each pack at most ``max_classes`` classes."""
    packs: list[list[int]] = [[]]
    for classes in sorted(groups, key=lambda g: (-len(g), g[0])):
        if len(packs[-1]) + len(classes) > max_classes:
            packs.append([])
        packs[-1] += classes
    return packs
