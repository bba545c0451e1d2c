"""crossmodal: mappings package - cues (AudioSet tags or text) -> ImageNet classes and gains."""

from .classes import ImageNetClass, imagenet_classes
from .guide import Guide, Match
from .mapper import CueMapper, MapperConfig
from .wordnet import WordNetHierarchy, imagenet_hierarchy

__all__ = ["CueMapper", "Guide", "ImageNetClass", "MapperConfig", "Match", "WordNetHierarchy",
           "imagenet_classes", "imagenet_hierarchy"]
