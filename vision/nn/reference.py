"""Reference execution of a SeqPar model: every branch as its own module, one after another.

Slow by design; it is the ground truth the fused execution is tested and benchmarked against.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model import Gains, SeqParModel, attended_logits


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
        features = model.trunk(x)
        plain = self.run_levels(features, [None] * len(level_gains))
        if all(g is None for g in level_gains):
            return plain
        in_blocks = [g if self.branches[d][0] and len(self.branches[d][0]) else None for d, g in enumerate(level_gains)]
        gained = self.run_levels(features, in_blocks) if any(g is not None for g in in_blocks) else None
        return attended_logits(gained, plain, self._path_gains(level_gains, x.shape[0]))

    def run_levels(self, trunk_features: torch.Tensor, level_gains: list[torch.Tensor | None]) -> torch.Tensor:
        """Every branch on its own, one after another; feature-map gains at each branch's attention block."""
        model = self.model
        parents = [trunk_features]
        logits: dict[int, torch.Tensor] = {}
        for depth, nodes in enumerate(model.hierarchy.levels):
            gain = level_gains[depth]
            features = []
            for g, node in enumerate(nodes):
                h = parents[max(node.parent, 0)]
                node_gain = None if gain is None else gain[:, g : g + 1]
                for i, block in enumerate(self.branches[depth][g]):
                    h = block(h, gain=node_gain if i == model.config.attention_block else None)
                features.append(h)
                if node.is_leaf:
                    logits[node.class_index] = self.heads[depth][str(g)](h.mean((2, 3)).unsqueeze(1))[:, 0]
            parents = features
        return torch.stack([logits[c] for c in range(model.config.num_classes)], 1)

    def _path_gains(self, level_gains: list[torch.Tensor | None], batch: int) -> torch.Tensor:
        """The product of the gains on each class's tree path, walked node by node."""
        hierarchy = self.model.hierarchy
        columns = []
        for c in range(self.model.config.num_classes):
            product = torch.ones(batch)
            for depth, pos in hierarchy.path(*hierarchy.leaf_position(c)):
                if level_gains[depth] is not None:
                    product = product * level_gains[depth][:, pos].float().cpu()
            columns.append(product)
        return torch.stack(columns, 1)
