"""Hard cost budgets: discretization refuses architectures whose derived network costs too much.

A budget ("at most 0.8 M MACs", "at most 3 ms on this machine") is an additive resource
constraint, so it rides on the exact constrained discretization (dp.py) as one more counter
in the DP state: a network-level `CountTracker` whose increments are costs instead of 1.
Exactness needs integer costs, so everything is counted in *ticks*:

* params: 1 tick = 1 parameter; MACs: 1 tick = 1 multiply-accumulate (both already integers);
* latency: 1 tick = 1 ns, each table entry's median rounded to the nanosecond once, when it
  is read (measurement noise is microseconds, so nothing is lost). The predicted latency that
  `derive --latency` reports is the same sum of rounded entries, so the budget and the report
  cannot disagree.

The budget itself is written in the cost unit (millions of parameters or MACs, milliseconds)
and converted with `floor`, so "within budget" means charged ticks <= floor(budget * 1e6).
The DP is pseudo-polynomial: its states carry the accumulated ticks, at most one state per
distinct partial sum (few in practice: edges of one shape share their op costs).

What is charged: `fixed` (every fixed op outside keep edges) plus, for each decided α, the
cost of the chosen candidate summed over the choice points sharing that α, plus the fixed ops
on its keep edge (an adapter lives and dies with its edge). That equals the derived network's
cost (`arch_cost`, the predicted latency) whenever no costed op can be dead in an architecture
where it is charged; `orphans` finds the ops for which that cannot be guaranteed (in
NAS-Bench-201 a `none` on the edge 2->3 orphans the convolutions feeding node 2). Where there
are such ops the charge is an upper bound: the budget is still never exceeded, but an
architecture that fits only thanks to its dead ops is refused. `BudgetRule.exact` says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from dasc.compiler.arch import Arch, Structure, active_alphas, from_decisions, structure
from dasc.compiler.ir import IR, ChoiceNode, CombineNode, OpCall, OpNode, OutputNode
from dasc.compiler.prune import alive, derived_inputs
from dasc.errors import ConstraintError
from dasc.ops import REGISTRY
from dasc.ops.registry import Shape

KINDS = ("params", "macs", "latency")
TICKS_PER_UNIT = 1_000_000  # millions of params / MACs; nanoseconds per millisecond
UNIT = {"params": "M params", "macs": "M MACs", "latency": "ms"}

OpTicks = Callable[[OpCall, Sequence[Shape]], int]


def model_ticks(kind: str) -> OpTicks:
    """Per-op ticks from the compiler's cost model (params or MACs)."""
    from dasc.compiler.cost import op_cost  # cost imports prune, which imports arch: no cycle

    if kind not in ("params", "macs"):
        raise ValueError(f"the cost model has no {kind!r}; latency needs a table")
    return lambda call, shapes: int(getattr(op_cost(call, shapes), kind))


def to_ticks(value: float) -> int:
    """A figure in the cost unit as ticks, rounded down (a budget must never be exceeded);
    the rounding to 1e-3 ticks first absorbs binary noise such as 0.3 * 1e6 = 299999.99..."""
    return math.floor(round(value * TICKS_PER_UNIT, 3))


def in_units(ticks: int) -> float:
    return ticks / TICKS_PER_UNIT


@dataclass(frozen=True)
class BudgetRule:
    """The derived network may cost at most `limit` ticks (`budget` in the cost unit).

    Behaves as a network-level count rule for the DP (count.py): `max_count` is what the
    choices may spend once `fixed` is paid, `weights[α][i]` what picking candidate i costs.
    """

    kind: str
    budget: float
    limit: int
    fixed: int
    weights: Mapping[str, tuple[int, ...]] = field(compare=False)
    exact: bool = True
    orphans: tuple[str, ...] = ()
    op: str = ""
    cell: None = None
    span: Any = None

    @property
    def max_count(self) -> int:
        return self.limit - self.fixed

    def describe(self) -> str:
        return f"budget <= {self.budget:g} {UNIT[self.kind]}"


def _node_ticks(ir: IR, n: str, p: Any, op_ticks: OpTicks) -> int:
    return op_ticks(p.call, [ir.node(x).shape for x in p.inputs])


def candidate_ticks(cand: Any, in_shape: Shape, op_ticks: OpTicks) -> int:
    """A candidate's ops (adapters included); a zero candidate (`none`) is free."""
    if cand.zero:
        return 0
    return sum(op_ticks(b.call, [in_shape if j < 0 else cand.nodes[j].shape for j in b.inputs])
               for b in cand.nodes)


def make_budget(ir: IR, kind: str, budget: float, op_ticks: OpTicks | None = None,
                st: Structure | None = None) -> BudgetRule:
    """The rule for `budget` (in the cost unit); `op_ticks` defaults to the cost model."""
    if kind not in KINDS:
        raise ValueError(f"unknown cost kind {kind!r}")
    op_ticks = op_ticks or model_ticks(kind)
    st = st or structure(ir)
    weights: dict[str, list[int]] = {}
    ticks: dict[str, int] = {}
    for n, p in st.order:
        if isinstance(p, ChoiceNode):
            shape = ir.node(p.inputs[0]).shape
            costs = [candidate_ticks(c, shape, op_ticks) for c in p.candidates]
            ticks[n] = max(costs, default=0)
            old = weights.setdefault(p.alpha, [0] * len(costs))
            weights[p.alpha] = [a + b for a, b in zip(old, costs)]
        elif isinstance(p, OpNode):
            ticks[n] = _node_ticks(ir, n, p, op_ticks)
    fixed = 0
    for n, p in st.order:
        if not isinstance(p, OpNode):
            continue
        if n in st.deferred:  # on a keep edge: paid with the edge's choice
            alpha = ir.node(st.edge_choice[st.deferred[n]]).alpha
            weights[alpha] = [w + ticks[n] for w in weights[alpha]]
        else:
            fixed += ticks[n]
    dead = orphans(ir, st, {n for n, t in ticks.items() if t > 0})
    return BudgetRule(kind, float(budget), to_ticks(budget), fixed,
                      {k: tuple(v) for k, v in weights.items()}, not dead, tuple(dead))


def orphans(ir: IR, st: Structure, costed: set[str]) -> list[str]:
    """Costed nodes that some architecture charges but leaves dead (empty: charges are exact).

    A static pass in reverse topological order: `always` holds the nodes live in every
    architecture, `soft` those live whenever they are not a zero tensor (a plain sum drops
    only zero inputs). A choice is charged only when decided and its `none` costs nothing, so
    it is safe in either set; a fixed op must be in `always`; a keep edge's choice and chain
    are charged exactly when the edge is kept, so their keep node must be in `always`.
    """
    zeroable: set[str] = set()
    for n, p in st.order:
        if isinstance(p, ChoiceNode):
            if any(p.candidates[i].zero for i in st.allowed(ir, n)):
                zeroable.add(n)
        elif isinstance(p, OpNode) and p.adapter and p.inputs and p.inputs[0] in zeroable:
            zeroable.add(n)
        elif _plain_sum(p) and all(x in zeroable for x in p.inputs):
            zeroable.add(n)
    always, soft = {ir.output}, set()
    for n, p in reversed(st.order):
        if n in always:
            _read_by_live(ir, n, p, zeroable, always, soft)
        elif n in soft and not isinstance(p, ChoiceNode):
            soft.update(p.inputs)  # an adapter or a sum that is live carries its nonzero inputs
    bad = []
    for n in st.deferred:
        keep_node = st.deferred[n][0]
        if n in costed and keep_node not in always:
            bad.append(n)
    for n, p in st.order:
        if n not in costed or n in st.deferred:
            continue
        if isinstance(p, ChoiceNode) and (n in always or n in soft):
            continue
        if n not in always:
            bad.append(n)
    return bad


def _plain_sum(p: Any) -> bool:
    return isinstance(p, CombineNode) and p.kind == "sum" and p.keep is None


def _read_by_live(ir: IR, n: str, p: Any, zeroable: set[str], always: set[str],
                  soft: set[str]) -> None:
    """What a node that is live in every architecture surely reads."""
    if isinstance(p, (OpNode, OutputNode)) or (isinstance(p, CombineNode)
                                               and p.kind == "concat" and p.keep is None):
        always.update(p.inputs)
    elif isinstance(p, ChoiceNode):
        if n not in zeroable:  # a zero pick reads nothing
            always.update(p.inputs)
    elif isinstance(p, CombineNode) and p.keep is not None:
        if p.keep == len(p.inputs):  # every edge kept (and its choices never pick `none`)
            always.update(p.inputs)
    elif _plain_sum(p):
        for x in p.inputs:
            (soft if x in zeroable else always).add(x)


# ----------------------------------------------------------------------------- one architecture

def charged(ir: IR, arch: Arch, rule: BudgetRule, st: Structure | None = None) -> int:
    """Ticks the DP charges `arch`: fixed ops plus the weights of its decided choices (ops
    an arch.json names for dropped edges are not decided, so not charged)."""
    st = st or structure(ir)
    index = {p.alpha: [c.name for c in p.candidates] for _, p in st.choices}
    active = set(active_alphas(ir, st, dict(arch.keeps)))
    return rule.fixed + sum(rule.weights[k][index[k].index(op)] for k, op in arch.choices
                            if k in active and k in rule.weights)


def derived_ticks(ir: IR, arch: Arch, op_ticks: OpTicks, st: Structure | None = None) -> int:
    """The derived network's true cost: its live ops only (the nodes `prune` keeps)."""
    st = st or structure(ir)
    chosen, kept = st.view(ir, arch)
    live = alive(st, derived_inputs(st, chosen, kept), ir.output)
    total = 0
    for n, p in st.order:
        if n not in live:
            continue
        if isinstance(p, ChoiceNode):
            total += candidate_ticks(chosen[n], ir.node(p.inputs[0]).shape, op_ticks)
        elif isinstance(p, OpNode):
            total += 0 if _is_zero(p.call) else _node_ticks(ir, n, p, op_ticks)
    return total


def _is_zero(call: OpCall) -> bool:
    spec = REGISTRY.get(call.op)
    return bool(spec is not None and spec.zero)


def violation(ir: IR, arch: Arch, rule: BudgetRule, st: Structure | None = None) -> str | None:
    """The line `constraints.violations` reports, or None within budget."""
    cost = charged(ir, arch, rule, st)
    if cost <= rule.limit:
        return None
    return f"{rule.describe()}: the derived network costs {in_units(cost):g} {UNIT[rule.kind]}"


def cheapest(ir: IR, rule: BudgetRule, rules: Sequence[Any] = ()) -> tuple[Arch, int] | None:
    """The architecture the DP charges least among those satisfying `rules` (the space's
    path and count rules), and its charge: what a budget has to allow at the very least."""
    from dasc.compiler.count import best_decisions  # count imports this module

    st = structure(ir)
    alpha = {n: p.alpha for n, p in st.choices}
    decisions = best_decisions(ir, lambda c, i: -float(rule.weights[alpha[c]][i]), rules, st)
    if decisions is None:
        return None
    arch = from_decisions(decisions)
    return arch, charged(ir, arch, rule, st)


def unmet(ir: IR, rule: BudgetRule, rules: Sequence[Any] = ()) -> ConstraintError:
    """The error when no architecture satisfying `rules` fits the budget."""
    best = cheapest(ir, rule, rules)
    unit = UNIT[rule.kind]
    if best is None:
        return ConstraintError(f"no architecture of space '{ir.name}' satisfies its "
                               f"constraints", span=ir.span,
                               hint="run `dasc compile` for the rule and path to blame")
    need = in_units(best[1])
    return ConstraintError(
        f"no architecture of space '{ir.name}' fits {rule.describe()}: the cheapest that "
        f"satisfies the constraints costs {need:g} {unit}", span=ir.span,
        notes=(f"fixed ops (stem, head, preprocessing) alone cost "
               f"{in_units(rule.fixed):g} {unit}",),
        hint=f"raise the budget to at least {math.ceil(need * 1000) / 1000:g}, or shrink the "
             f"space (--set) so that its fixed ops cost less")
