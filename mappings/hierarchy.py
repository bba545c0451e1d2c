"""Export a class tree for NHL models: ``python -m mappings.hierarchy --levels 2 --out tree.yaml``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .embeddings import DEFAULT_MODEL, EmbeddingIndex, TextEncoder
from .trees import cluster_tree, save_tree, validate_tree, wordnet_tree
from .wordnet import imagenet_hierarchy


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=2, help="levels below the root, classes included")
    parser.add_argument("--method", choices=["wordnet", "cluster"], default="wordnet",
                        help="WordNet parents/depths, or Ward clustering of class-text embeddings")
    parser.add_argument("--depths", type=int, nargs="*", default=None, help="WordNet depths of upper levels")
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
    else:
        classes = hierarchy.classes
        index = EmbeddingIndex.build(TextEncoder(model_name=args.model, cache_dir=args.cache_dir),
                                     [c.index for c in classes], [c.text for c in classes])
        tree = cluster_tree(index.embeddings.numpy(), args.levels, args.sizes)
    validate_tree(tree, len(hierarchy.classes))
    path = save_tree(tree, args.out)
    counts, frontier = [], [tree]
    while frontier and isinstance(frontier[0], dict):
        frontier = [c for node in frontier for c in node["children"]]
        counts.append(len(frontier))
    return {"out": str(path), "method": args.method, "levels": args.levels, "nodes_per_level": counts}


if __name__ == "__main__":
    try:
        print(main(get_args_parser().parse_args()))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
