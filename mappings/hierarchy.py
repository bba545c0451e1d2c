"""``python -m mappings.hierarchy --levels 2 --out tree.yaml``: export a class tree for NHL models.

Methods: ``wordnet`` (WordNet parents, upper levels at WordNet depths), ``groups`` (WordNet groups of at
most ``--max-classes`` classes, small groups merged up to ``--min-classes``: the default model's tree with
100 and 20) and ``cluster`` (Ward clustering of class-text embeddings). Trees are built in
:mod:`mappings.trees`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from xmcommon.cli import exit_process, run_cli
from xmcommon.files import write_data_file

from .embeddings import DEFAULT_MODEL, EmbeddingIndex, TextEncoder
from .trees import cluster_tree, wordnet_group_tree, wordnet_tree
from .wordnet import imagenet_hierarchy

METHODS = ("wordnet", "groups", "cluster")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a class tree for NHL models (YAML or JSON).")
    parser.add_argument("--levels", type=int, default=2, help="levels below the root, classes included (wordnet, cluster)")
    parser.add_argument("--method", choices=METHODS, default="wordnet",
                        help="WordNet parents/depths, size-capped WordNet groups, or clustered class-text embeddings")
    parser.add_argument("--depths", type=int, nargs="*", default=None, help="WordNet depths of upper levels")
    parser.add_argument("--max-classes", type=int, default=100, help="largest group (groups)")
    parser.add_argument("--min-classes", type=int, default=20, help="smaller groups are merged with siblings (groups)")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="cluster counts per level")
    parser.add_argument("--wnids", type=Path, default=None, help="a model's class list, one wnid per line")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="sentence-transformers model (cluster)")
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder (cluster)")
    parser.add_argument("--out", type=Path, required=True, help="tree.yaml or tree.json")
    return parser


def main(args: argparse.Namespace) -> dict:
    wnids = None
    if args.wnids is not None:
        if not args.wnids.is_file():
            raise FileNotFoundError(f"wnids file {args.wnids} not found")
        wnids = [line.strip() for line in args.wnids.read_text().splitlines() if line.strip()]
    hierarchy = imagenet_hierarchy(wnids)
    if args.method == "wordnet":
        tree = wordnet_tree(hierarchy, args.levels, depths=args.depths)
    elif args.method == "groups":
        tree = wordnet_group_tree(hierarchy, args.max_classes, args.min_classes)
    else:
        classes = hierarchy.classes
        index = EmbeddingIndex.build(TextEncoder(model_name=args.model, cache_dir=args.cache_dir),
                                     [c.index for c in classes], [c.text for c in classes])
        tree = cluster_tree(index.embeddings.numpy(), args.levels, args.sizes)
    path = write_data_file(args.out, tree)
    counts, frontier = [], [tree]
    while frontier and isinstance(frontier[0], dict):
        frontier = [c for node in frontier for c in node["children"]]
        counts.append(len(frontier))
    return {"out": str(path), "method": args.method, "nodes_per_level": counts}


def cli(argv: list[str] | None = None) -> int:
    return run_cli(get_args_parser(), main, argv)


if __name__ == "__main__":
    exit_process(cli())
