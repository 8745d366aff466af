"""Terms of the architecture objective: L1 sparsity, entropy, and the expected cost.

All act on gate weights, not on raw α, so they mean the same thing for every gate kind: L1
pushes sigmoid gates to zero (the seed article's "be decisive"), entropy sharpens each
choice's distribution, and the expected cost is the hardware-aware penalty.

The expected cost E[cost] = fixed + Σ_α Σ_i w_α,i · c_α,i is in the cost unit (millions of
parameters or MACs, or milliseconds from a latency table), the same unit as `budget`,
`cost_target` and `derive`'s figures, so that they can be compared:

* `fixed` is every op outside the choices (stem, head, preprocessing): a constant, there so
  that E[cost] is on the scale of a whole network and a target like "3 ms" means 3 ms;
* c_α,i is candidate i's cost summed over the choice points sharing α (one α decides all of
  them), plus the adapters on its edge; on the edges of a `keep k` node of n inputs it is
  weighted by k/n, the share of those edges a derived network keeps, since otherwise a DARTS
  cell would count 14 edges where its derived cell has 8.

Two forms apply it (Penalty.form):
* additive (SNAS, FBNet's linear variant): L + λ·E[cost];
* multiplicative (ProxylessNAS, MnasNet): L · (E[cost] / target)^β, which rewards being below
  the target as much as it punishes being above, and needs no λ tuned to the loss's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from dasc.compiler.arch import structure
from dasc.compiler.budget import OpTicks, TICKS_PER_UNIT, candidate_ticks, model_ticks
from dasc.compiler.ir import IR, ChoiceNode, CombineNode, OpNode

FORMS = ("additive", "multiplicative")


@dataclass(frozen=True)
class CostModel:
    """Per α key, each candidate's cost (cost units); `fixed` for everything else."""

    fixed: float
    table: Mapping[str, list[float]]


def cost_model(ir: IR, op_ticks: OpTicks) -> CostModel:
    """E[cost]'s coefficients for one space (see the module doc for the k/n edge share)."""
    st = structure(ir)
    ticks = {n: op_ticks(p.call, [ir.node(x).shape for x in p.inputs])
             for n, p in st.order if isinstance(p, OpNode)}
    share: dict[str, float] = {}
    chain: dict[str, int] = {}
    for n, p in st.order:
        if isinstance(p, CombineNode) and p.keep is not None:
            for pos in range(len(p.inputs)):
                c = st.edge_choice.get((n, pos))
                if c is not None:
                    share[c] = p.keep / len(p.inputs)
    for n, edge in st.deferred.items():
        if n in ticks:
            c = st.edge_choice[edge]
            chain[c] = chain.get(c, 0) + ticks[n]
    table: dict[str, list[float]] = {}
    for n, p in st.choices:
        shape = ir.node(p.inputs[0]).shape
        f = share.get(n, 1.0)
        costs = [f * (candidate_ticks(c, shape, op_ticks) + chain.get(n, 0)) / TICKS_PER_UNIT
                 for c in p.candidates]
        old = table.get(p.alpha)
        table[p.alpha] = costs if old is None else [a + b for a, b in zip(old, costs)]
    fixed = sum(t for n, t in ticks.items() if n not in st.deferred) / TICKS_PER_UNIT
    return CostModel(fixed, table)


def cost_table(ir: IR, kind: str, op_ticks: OpTicks | None = None) -> dict[str, list[float]]:
    """Per α key, each candidate's cost in the cost unit (params and MACs: millions)."""
    return dict(cost_model(ir, op_ticks or model_ticks(kind)).table)


@dataclass(frozen=True)
class Penalty:
    """Weights of the regularizers (0 disables a term) and the form of the cost term."""

    l1: float = 0.0
    entropy: float = 0.0
    cost: float = 0.0  # λ of the additive form
    form: str = "additive"
    target: float = 0.0  # the multiplicative form's target, in the cost unit
    beta: float = 0.6  # its exponent (FBNet's 0.6)

    @property
    def uses_cost(self) -> bool:
        return self.form == "multiplicative" or self.cost > 0


class ArchPenalty(nn.Module):
    """The regularizers of a lowered super-network, from its gate and α.

    `forward()` is the additive part (L1, entropy, λ·E[cost]); `objective(loss)` is what the
    architecture step minimises, the multiplicative form included.
    """

    def __init__(self, gm: nn.Module, ir: IR, penalty: Penalty, cost_kind: str = "macs",
                 op_ticks: OpTicks | None = None, track_cost: bool = False) -> None:
        super().__init__()
        if penalty.form not in FORMS:
            raise ValueError(f"unknown cost form {penalty.form!r}")
        self.gm = [gm]  # a list keeps the super-network out of this module's parameters
        self.penalty = penalty
        self.keys = list(gm.dasc.alphas)
        self.tracks_cost = penalty.uses_cost or track_cost
        model = cost_model(ir, op_ticks or model_ticks(cost_kind)) if self.tracks_cost else None
        self.fixed = model.fixed if model else 0.0
        table = model.table if model else {}
        for i, key in enumerate(self.keys):
            if key in table:
                self.register_buffer(f"cost_{i}", torch.tensor(table[key], dtype=torch.float32))

    def weights(self) -> list[torch.Tensor]:
        gm = self.gm[0]
        return [gm.gate(getattr(gm.alphas, gm.dasc.alphas[k].attr), key=k) for k in self.keys]

    def expected_cost(self, weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        """fixed + Σ w·c in the cost unit (differentiable in the gate weights)."""
        weights = weights if weights is not None else self.weights()
        device = weights[0].device if weights else torch.device("cpu")
        total = torch.full((), self.fixed, device=device)
        for i, w in enumerate(weights):
            cost = getattr(self, f"cost_{i}", None)
            if cost is not None:
                total = total + (w * cost.to(w.device)).sum()
        return total

    def current_cost(self) -> float:
        """E[cost] under the gate's deterministic (eval-mode) weights, for the metrics: no
        Gumbel noise drawn, so recording it leaves the random stream of the search alone."""
        gate = self.gm[0].gate if self.keys else None
        if gate is None:
            return float(self.fixed)
        was_training = gate.training
        gate.eval()
        try:
            with torch.no_grad():
                return float(self.expected_cost())
        finally:
            gate.train(was_training)

    def _terms(self, weights: list[torch.Tensor], with_cost: bool) -> torch.Tensor:
        p = self.penalty
        total = weights[0].new_zeros(())
        if p.l1:
            total = total + p.l1 * sum(w.abs().sum() for w in weights)
        if p.entropy:
            ent = weights[0].new_zeros(())
            for w in weights:
                prob = w / w.sum().clamp_min(1e-12)
                ent = ent - (prob * prob.clamp_min(1e-12).log()).sum()
            total = total + p.entropy * ent
        if with_cost and p.form == "additive" and p.cost:
            total = total + p.cost * self.expected_cost(weights)
        return total

    def forward(self) -> torch.Tensor:
        p = self.penalty
        if not (p.l1 or p.entropy or (p.cost and p.form == "additive")) or not self.keys:
            return torch.zeros(())
        return self._terms(self.weights(), with_cost=True)

    def factor(self, weights: list[torch.Tensor] | None = None) -> torch.Tensor:
        """(E[cost] / target)^β, the multiplicative form's factor on the loss."""
        p = self.penalty
        ratio = self.expected_cost(weights).clamp_min(1e-12) / p.target
        return ratio ** p.beta

    def objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The architecture objective built on the validation loss `loss`."""
        p = self.penalty
        if p.form != "multiplicative" or not self.keys:
            return loss + self.forward().to(loss.device)
        weights = self.weights()
        scaled = loss * self.factor(weights).to(loss.device)
        return scaled + self._terms(weights, with_cost=False).to(loss.device)


def make_penalty(gm: nn.Module, ir: IR, config, op_ticks: Callable | None = None
                 ) -> ArchPenalty:
    """The penalty a SearchConfig asks for; with a latency cost, the table is read (and
    refused if stale) here, before any training starts. The expected cost is tracked, for
    the run's metrics, whenever it is penalised or a budget is set."""
    from dasc.runtime.latency import op_ticks_for

    penalty = Penalty(config.l1, config.entropy, config.cost, config.cost_form,
                      config.cost_target, config.cost_beta)
    track = penalty.uses_cost or bool(config.budget)
    if track and op_ticks is None:
        op_ticks = op_ticks_for(ir, config.cost_kind, config.latency_table)
    return ArchPenalty(gm, ir, penalty, config.cost_kind, op_ticks, track_cost=track)
