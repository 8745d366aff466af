"""Terms added to the architecture objective: L1 sparsity, entropy, expected cost.

All three act on gate weights, not on raw α, so they mean the same thing for every gate kind:
L1 pushes sigmoid gates to zero (the seed article's "be decisive"), entropy sharpens each
choice's distribution, and the expected cost Σ_i w_i · cost_i is the hardware-aware penalty
(SNAS, FBNet, ProxylessNAS) with costs from the compiler's cost model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dasc.compiler.cost import candidate_cost
from dasc.compiler.ir import IR


def cost_table(ir: IR, kind: str) -> dict[str, list[float]]:
    """Per α key, each candidate's cost summed over every choice point sharing that α.

    A shared α decides all its instances at once, so its expected cost is the sum over them.
    """
    table: dict[str, list[float]] = {}
    for _, node in ir.choices():
        in_shape = ir.node(node.inputs[0]).shape
        costs = [float(getattr(candidate_cost(c, in_shape), kind)) for c in node.candidates]
        if node.alpha in table:
            table[node.alpha] = [a + b for a, b in zip(table[node.alpha], costs)]
        else:
            table[node.alpha] = costs
    return table


@dataclass(frozen=True)
class Penalty:
    """Weights of the regularizers (0 disables a term)."""

    l1: float = 0.0
    entropy: float = 0.0
    cost: float = 0.0
    cost_scale: float = 1e6  # costs enter in millions (of parameters or MACs)


class ArchPenalty(nn.Module):
    """Computes the regularizer from a lowered super-network's gate and α."""

    def __init__(self, gm: nn.Module, ir: IR, penalty: Penalty, cost_kind: str) -> None:
        super().__init__()
        self.gm = [gm]  # a list keeps the super-network out of this module's parameters
        self.penalty = penalty
        self.keys = list(gm.dasc.alphas)
        table = cost_table(ir, cost_kind) if penalty.cost else {}
        for i, key in enumerate(self.keys):
            if key in table:
                self.register_buffer(f"cost_{i}", torch.tensor(table[key]) / penalty.cost_scale)

    def weights(self) -> list[torch.Tensor]:
        gm = self.gm[0]
        return [gm.gate(getattr(gm.alphas, gm.dasc.alphas[k].attr), key=k) for k in self.keys]

    def expected_cost(self, weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        weights = weights if weights is not None else self.weights()
        total = torch.zeros(())
        for i, w in enumerate(weights):
            cost = getattr(self, f"cost_{i}", None)
            if cost is not None:
                total = total + (w * cost.to(w.device)).sum().to(total.device)
        return total

    def forward(self) -> torch.Tensor:
        p = self.penalty
        if not (p.l1 or p.entropy or p.cost) or not self.keys:
            return torch.zeros(())
        weights = self.weights()
        total = weights[0].new_zeros(())
        if p.l1:
            total = total + p.l1 * sum(w.abs().sum() for w in weights)
        if p.entropy:
            ent = 0.0
            for w in weights:
                prob = w / w.sum().clamp_min(1e-12)
                ent = ent - (prob * prob.clamp_min(1e-12).log()).sum()
            total = total + p.entropy * ent
        if p.cost:
            total = total + p.cost * self.expected_cost(weights).to(total.device)
        return total
