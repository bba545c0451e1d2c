"""crossmodal: mappings package - cues (AudioSet tags or text) -> ImageNet classes and gains.

The public names load lazily (PEP 562): ``import mappings.tag_decisions`` needs neither torch nor a
sentence model, which only the mapper's text path uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "CueMapper": "mapper", "MapperConfig": "mapper", "Guide": "guide", "Match": "guide",
    "ImageNetClass": "classes", "imagenet_classes": "classes", "WordNetHierarchy": "wordnet",
    "imagenet_hierarchy": "wordnet", "cluster_tree": "trees", "wordnet_group_tree": "trees",
    "wordnet_tree": "trees", "TagDecisionTable": "tag_decisions", "TagRules": "tag_decisions",
}
__all__ = ["CueMapper", "Guide", "ImageNetClass", "MapperConfig", "Match", "TagDecisionTable", "TagRules",
           "WordNetHierarchy", "cluster_tree", "imagenet_classes", "imagenet_hierarchy", "wordnet_group_tree",
           "wordnet_tree"]

if TYPE_CHECKING:
    from .classes import ImageNetClass, imagenet_classes
    from .guide import Guide, Match
    from .mapper import CueMapper, MapperConfig
    from .tag_decisions import TagDecisionTable, TagRules
    from .trees import cluster_tree, wordnet_group_tree, wordnet_tree
    from .wordnet import WordNetHierarchy, imagenet_hierarchy


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
