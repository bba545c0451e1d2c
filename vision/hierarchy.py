"""Class trees for SeqPar networks: validation, levels for fused execution, and subsets for cutouts.

A tree is plain data, ``{"name": str, "children": [subtree or class index, ...]}``, whose leaves are
output indices ``0..num_classes-1``. The root stands for the shared trunk; every other node owns a
branch. A flat tree (all leaves directly under the root) is a PHL network, deeper trees are NHL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmcommon.files import read_data_file, write_data_file

Tree = dict[str, Any]


@dataclass(frozen=True)
class Node:
    """One branch of the tree, as placed in its level.

    ``parent`` is the position of the parent node in the previous level (``-1``: the trunk);
    ``class_index`` is the output index for a leaf and ``None`` for an internal node.
    """

    name: str
    depth: int
    parent: int
    class_index: int | None = None

    @property
    def is_leaf(self) -> bool:
        return self.class_index is not None


class Hierarchy:
    """A validated class tree, laid out level by level (breadth first, children kept in order)."""

    def __init__(self, tree: Mapping[str, Any], num_classes: int):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = num_classes
        self.tree = _normalise(tree, num_classes)
        self.levels: tuple[tuple[Node, ...], ...] = _lay_out(self.tree)
        self._leaf_position = {
            node.class_index: (depth, pos)
            for depth, level in enumerate(self.levels)
            for pos, node in enumerate(level)
            if node.is_leaf
        }
        self._node_position = {
            node.name: (depth, pos)
            for depth, level in enumerate(self.levels)
            for pos, node in enumerate(level)
            if not node.is_leaf
        }
        self._leaves_under = _leaves_under_nodes(self.tree)

    @classmethod
    def flat(cls, num_classes: int, name: str = "root") -> Hierarchy:
        """The PHL tree: one branch per class, all directly under the trunk."""
        return cls({"name": name, "children": list(range(num_classes))}, num_classes)

    @classmethod
    def balanced(cls, num_classes: int, group_sizes: Sequence[int]) -> Hierarchy:
        """A tree grouping consecutive class indices: ``group_sizes`` from the leaves upwards.

        ``balanced(100, [10])`` gives 10 superclasses of 10 classes; ``[10, 5]`` adds a level of
        groups of 5 superclasses above them. Useful when no semantic hierarchy is at hand.
        """
        nodes: list[Any] = list(range(num_classes))
        for level, size in enumerate(group_sizes):
            if size < 1:
                raise ValueError(f"group sizes must be >= 1, got {list(group_sizes)}")
            nodes = [
                {"name": f"g{level}_{i // size}", "children": nodes[i : i + size]}
                for i in range(0, len(nodes), size)
            ]
        return cls({"name": "root", "children": nodes}, num_classes)

    @classmethod
    def load(cls, path: str | Path, num_classes: int | None = None) -> Hierarchy:
        """Read a tree from a YAML or JSON file (``num_classes`` defaults to the number of leaves)."""
        tree = read_data_file(path)
        if num_classes is None:
            num_classes = sum(1 for _ in _leaves(tree)) if isinstance(tree, Mapping) else 0
        try:
            return cls(tree, num_classes)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err

    def to_dict(self) -> Tree:
        return json.loads(json.dumps(self.tree))

    def save(self, path: str | Path) -> Path:
        """Write the tree as JSON (``.json``) or YAML (``.yaml`` / ``.yml``), atomically."""
        return write_data_file(path, self.tree)

    @property
    def depth(self) -> int:
        return len(self.levels)

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(self._node_position)

    def leaves(self, name: str | None = None) -> tuple[int, ...]:
        """Output indices below node ``name`` (the whole tree for ``None``), left to right."""
        if name is None:
            return tuple(_leaves(self.tree))
        self.node_position(name)
        return self._leaves_under[name]

    def node_gains(self, class_gains: Mapping[int, float]) -> dict[str, float]:
        """Gains for the internal nodes whose classes are all in ``class_gains`` (output index -> gain):
        the smallest gain among their classes, so a node is never attended more than any class below it."""
        return {name: min(class_gains[c] for c in leaves) for name, leaves in self._leaves_under.items()
                if all(c in class_gains for c in leaves)}

    def leaf_position(self, class_index: int) -> tuple[int, int]:
        """(level, position in level) of a class's leaf."""
        return self._leaf_position[class_index]

    def node_position(self, name: str) -> tuple[int, int]:
        """(level, position in level) of an internal node."""
        if name not in self._node_position:
            raise ValueError(f"unknown tree node {name!r}; known nodes: {_preview(self._node_position)}")
        return self._node_position[name]

    def path(self, depth: int, position: int) -> list[tuple[int, int]]:
        """Positions of a node and all its ancestors below the trunk, deepest first."""
        out = []
        while position >= 0:
            out.append((depth, position))
            position = self.levels[depth][position].parent
            depth -= 1
        return out

    def subset(self, class_indices: Sequence[int]) -> tuple[Tree, list[list[int]]]:
        """The tree restricted to ``class_indices``, leaves renumbered by their order in that list.

        Returns the new tree and, per level, the positions of the kept nodes in the original level
        (increasing, so the kept nodes keep their relative order).
        """
        order = {c: i for i, c in enumerate(class_indices)}
        kept = _restrict(self.tree, order)
        if kept is None:
            raise ValueError("a cutout needs at least one class")
        names = {n.name for level in _lay_out(kept) for n in level if not n.is_leaf}
        positions = [
            [
                pos
                for pos, node in enumerate(level)
                if (node.class_index in order if node.is_leaf else node.name in names)
            ]
            for level in self.levels
        ]
        while positions and not positions[-1]:
            positions.pop()
        return kept, positions


def _preview(names: Iterable[str], n: int = 8) -> str:
    names = list(names)
    return ", ".join(map(repr, names[:n])) + (", ..." if len(names) > n else "")


def _leaves(tree: Any) -> Iterable[Any]:
    if isinstance(tree, Mapping):
        for child in tree.get("children") or []:
            yield from _leaves(child)
    else:
        yield tree


def _leaves_under_nodes(tree: Tree) -> dict[str, tuple[int, ...]]:
    """Output indices below every internal node (the root, which stands for the trunk, excluded)."""
    out: dict[str, tuple[int, ...]] = {}

    def visit(node: Any) -> tuple[int, ...]:
        if not isinstance(node, Mapping):
            return (node,)
        below = tuple(leaf for child in node["children"] for leaf in visit(child))
        out[node["name"]] = below
        return below

    for child in tree["children"]:
        visit(child)
    return out


def _normalise(tree: Any, num_classes: int) -> Tree:
    """Validate a tree and return a clean copy (ints for leaves, lists for children)."""
    seen_names: set[str] = set()
    seen_classes: set[int] = set()

    def visit(node: Any, where: str) -> Any:
        if isinstance(node, bool) or not isinstance(node, (int, Mapping)):
            raise ValueError(f"hierarchy node at {where} must be a class index or a mapping, got {node!r}")
        if isinstance(node, int):
            if not 0 <= node < num_classes:
                raise ValueError(f"hierarchy leaf {node} at {where} is out of range 0..{num_classes - 1}")
            if node in seen_classes:
                raise ValueError(f"hierarchy lists class {node} twice (again at {where})")
            seen_classes.add(node)
            return node
        extra = set(node) - {"name", "children"}
        if extra:
            raise ValueError(f"hierarchy node at {where} has unknown keys {sorted(extra)}; allowed: name, children")
        name = node.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"hierarchy node at {where} needs a non-empty string 'name', got {name!r}")
        if name in seen_names:
            raise ValueError(f"hierarchy node name {name!r} is used twice")
        seen_names.add(name)
        children = node.get("children")
        if not isinstance(children, list) or not children:
            raise ValueError(f"hierarchy node {name!r} needs a non-empty list 'children'")
        return {"name": name, "children": [visit(c, f"{where}/{name}") for c in children]}

    if not isinstance(tree, Mapping):
        raise ValueError(f"a hierarchy must be a mapping with 'name' and 'children', got {type(tree).__name__}")
    clean = visit(tree, "")
    missing = sorted(set(range(num_classes)) - seen_classes)
    if missing:
        raise ValueError(f"hierarchy misses {len(missing)} of {num_classes} classes, e.g. {missing[:10]}")
    return clean


def _lay_out(tree: Tree) -> tuple[tuple[Node, ...], ...]:
    levels: list[tuple[Node, ...]] = []
    frontier: list[tuple[Any, int]] = [(child, -1) for child in tree["children"]]
    depth = 0
    while frontier:
        level = []
        next_frontier = []
        for pos, (node, parent) in enumerate(frontier):
            if isinstance(node, int):
                level.append(Node(name=f"class:{node}", depth=depth, parent=parent, class_index=node))
            else:
                level.append(Node(name=node["name"], depth=depth, parent=parent))
                next_frontier.extend((child, pos) for child in node["children"])
        levels.append(tuple(level))
        frontier = next_frontier
        depth += 1
    return tuple(levels)


def _restrict(node: Any, order: Mapping[int, int]) -> Any:
    if isinstance(node, int):
        return order[node] if node in order else None
    children = [c for c in (_restrict(child, order) for child in node["children"]) if c is not None]
    return {"name": node["name"], "children": children} if children else None
