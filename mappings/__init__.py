"""crossmodal: mappings package - cues (AudioSet tags or text) -> ImageNet classes and gains."""

from .classes import ImageNetClass, imagenet_classes
from .guide import Guide, Match
from .mapper import CueMapper, MapperConfig
from .trees import cluster_tree, wordnet_group_tree, wordnet_tree
from .wordnet import WordNetHierarchy, imagenet_hierarchy

__all__ = ["CueMapper", "Guide", "ImageNetClass", "MapperConfig", "Match", "WordNetHierarchy", "cluster_tree",
           "imagenet_classes", "imagenet_hierarchy", "wordnet_group_tree", "wordnet_tree"]
