"""The network parts of a SeqPar model: grouped ops, branch blocks, the trunk and the per-branch reference loop.

``grouped``: one op per layer for G sibling branches; ``blocks``: the registered branch block types;
``trunk``: a backbone cut at its split-point, and the registered backbone families; ``lite``: EfficientNet-Lite
without timm (the default model's trunk); ``convnext``: the faster inference path of timm's ConvNeXt trunks;
``folding``: BatchNorm folding and tensors derived from parameters, kept until they change;
``meta``: structures on the meta device without random fills;
``reference``: every branch as its own module, the ground truth the fused execution is tested against.
"""

from .blocks import Block, block_types, make_block, register_block
from .trunk import BackboneFamily, Trunk, backbone_family, register_backbone_family

__all__ = ["BackboneFamily", "Block", "Trunk", "backbone_family", "block_types", "make_block", "register_backbone_family",
           "register_block"]
