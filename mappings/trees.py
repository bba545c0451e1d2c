"""Class trees for NHL models: ``{"name": str, "children": [subtree | class index, ...]}``.

Leaves are class indices, internal node names are unique. WordNet trees name nodes by synset
(``"domestic_cat.n.01"``), so they equal the node names in ``Guide.gains``; clustering trees name
them ``"cluster.L<level>.<n>"`` (use ``Guide.node_gains(tree)`` for those).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from statistics import median

import numpy as np
import yaml

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


def tree_leaves(tree: dict | int) -> list[int]:
    """Class indices of a tree, left to right."""
    if isinstance(tree, int):
        return [tree]
    return [leaf for child in tree["children"] for leaf in tree_leaves(child)]


def validate_tree(tree: object, num_classes: int) -> dict:
    """Check the exported format: unique node names, every class 0..n-1 exactly once."""
    names: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, bool) or not isinstance(node, dict | int):
            raise ValueError(f"tree node {node!r}: expected a class index or {{'name', 'children'}}")
        if isinstance(node, dict):
            if set(node) != {"name", "children"} or not isinstance(node["name"], str) \
                    or not isinstance(node["children"], list) or not node["children"]:
                raise ValueError(f"tree node {str(node)[:80]}: expected exactly a str 'name' and a non-empty "
                                 "'children' list")
            names.append(node["name"])
            for child in node["children"]:
                visit(child)

    visit(tree)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"tree node names must be unique; repeated: {dup[:5]}")
    leaves = tree_leaves(tree)
    if sorted(leaves) != list(range(num_classes)):
        raise ValueError(f"tree leaves must be the classes 0..{num_classes - 1} exactly once; got "
                         f"{len(leaves)} leaves, {len(set(leaves))} distinct")
    return tree


def save_tree(tree: dict, path: str | Path) -> Path:
    """Write a tree as YAML (``.yaml``/``.yml``) or JSON (``.json``)."""
    path = Path(path)
    if path.suffix not in {".yaml", ".yml", ".json"}:
        raise ValueError(f"tree file {path}: expected a .yaml, .yml or .json suffix")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(tree, indent=1) + "\n", encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(tree, sort_keys=False, default_flow_style=None, width=120), encoding="utf-8")
    return path


def load_tree(path: str | Path, num_classes: int | None = None) -> dict:
    """Read a YAML/JSON tree (``yaml.safe_load``), validated when ``num_classes`` is given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tree file {path} not found")
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    return validate_tree(tree, num_classes) if num_classes is not None else tree
