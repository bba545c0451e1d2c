"""Reference execution of a SeqPar model: every branch as its own module, one after another.

Slow by design; it is the ground truth the fused execution is tested and benchmarked against.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model import Gains, SeqParModel


class BranchLoop(nn.Module):
    """Runs ``model``'s branches in a Python loop, each branch holding its own (copied) weights."""

    def __init__(self, model: SeqParModel):
        super().__init__()
        self.model = model
        self.branches = nn.ModuleList()
        self.heads = nn.ModuleList()
        for level in model.levels:
            leaf_rank = {p: i for i, p in enumerate(level.leaf_list)}
            self.branches.append(nn.ModuleList(
                nn.ModuleList(block.select(torch.tensor([g])) for block in level.blocks) for g in range(level.groups)
            ))
            self.heads.append(nn.ModuleDict({
                str(g): level.head.select(torch.tensor([leaf_rank[g]])) for g in leaf_rank
            }))

    def forward(self, x: torch.Tensor, gains: Gains = None) -> torch.Tensor:
        model = self.model
        level_gains = model.level_gains(gains, x.shape[0])
        parents = [model.trunk(x)]
        logits: dict[int, torch.Tensor] = {}
        for depth, nodes in enumerate(model.hierarchy.levels):
            gain = level_gains[depth]
            features = []
            for g, node in enumerate(nodes):
                h = parents[max(node.parent, 0)]
                node_gain = None if gain is None else gain[:, g : g + 1]
                blocks = self.branches[depth][g]
                for i, block in enumerate(blocks):
                    h = block(h, gain=node_gain if i == model.config.attention_block else None)
                features.append(h)
                if node.is_leaf:
                    pooled = h.mean((2, 3)).unsqueeze(1)
                    if not blocks and node_gain is not None:
                        pooled = pooled * node_gain.unsqueeze(-1)
                    logits[node.class_index] = self.heads[depth][str(g)](pooled)[:, 0]
            parents = features
        return torch.stack([logits[c] for c in range(model.config.num_classes)], 1)
