"""Discretization: from the weights a search learned to one architecture, respecting the rules.

The objective. An architecture's score is the sum, over its decided choices (each α key once),
of log w(chosen op), where w are the gate weights of that α (softmax or sigmoid outputs). It is
the log-likelihood of the architecture if each choice were drawn from its weights, and every
architecture has the same number of terms (each keep node decides exactly k edges), so no
architecture is favoured for having fewer decisions. An edge that carries no decision (a
fixed op feeding a keep node) scores log 1 = 0.

Why this reproduces DARTS without rules. DARTS keeps, for each node, the k incoming edges with
the largest strength max_{o != none} w_o (stable order: the lower position wins a tie), then
the argmax op on each (the first on ties). Without rules the decisions of different nodes and
choices do not interact, so the score is maximized node by node; on one node it is a sum of
log w over the kept edges, each maximized by its edge's argmax, i.e. its strength; since log
is increasing, a sum of k strengths is largest for the top-k edges. Hence DARTS's architecture
is optimal, and `discretize` returns exactly it (with its tie-breaking) whenever it satisfies
the rules: rules that are not binding never change the answer. Otherwise the exact optimum over
the architectures that satisfy the rules is found by the max-score semiring (count.MaxScore,
ties: first found). The DP adds the log-weights exactly (as integers, see `_exact`): in floats
a sum of many terms absorbs a difference of 1e-16, and the DP could then prefer an edge that
DARTS ranks lower; exactly, with distinct weights the optimum is unique and is DARTS's.

Sigmoid gates (`mode="sigmoid"`): each op has an independent gate in (0, 1) and an op is "on"
when its gate exceeds `threshold`. One op per choice is still picked (the highest gate), but
`none`, where it is a candidate, is given weight `threshold` whatever its gate: a choice picks
`none` exactly when no other gate exceeds the threshold. Keep edges never pick `none`.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from dasc.compiler.arch import Arch, Structure, from_decisions, structure
from dasc.compiler.budget import BudgetRule, unmet
from dasc.compiler.constraints import violations
from dasc.compiler.count import best_decisions
from dasc.compiler.ir import IR, CombineNode, Rule
from dasc.errors import ConstraintError, UsageError

MODES = ("darts", "sigmoid")


def gate_weights(ir: IR, scores: Mapping[str, Sequence[float]], mode: str = "darts",
                 threshold: float = 0.5) -> dict[str, list[float]]:
    """Validated weights per α key (`none` set to `threshold` in sigmoid mode)."""
    if mode not in MODES:
        raise UsageError(f"unknown discretization mode '{mode}'",
                         hint=f"use one of: {', '.join(MODES)}")
    sizes = {p.alpha: p for _, p in ir.choices()}
    unknown = sorted(set(scores) - set(sizes))
    missing = sorted(set(sizes) - set(scores))
    if unknown or missing:
        what = (f"unknown α key '{unknown[0]}'" if unknown else f"no weights for '{missing[0]}'")
        raise UsageError(f"the weights do not fit space '{ir.name}': {what}",
                         hint="use weights from a run of this space with the same --set values")
    out: dict[str, list[float]] = {}
    for key, node in sizes.items():
        w = [float(v) for v in scores[key]]
        if len(w) != len(node.candidates):
            raise UsageError(f"'{key}' has {len(node.candidates)} candidates but {len(w)} "
                             f"weights", hint="use weights from a run of this space")
        if not all(math.isfinite(v) and v >= 0 for v in w):
            raise UsageError(f"the weights of '{key}' must be finite and >= 0, got {w}",
                             hint="pass gate weights (softmax or sigmoid outputs), not raw α")
        if mode == "sigmoid":
            w = [threshold if c.zero else v for c, v in zip(node.candidates, w)]
        out[key] = w
    return out


def _log(w: float) -> float:
    return math.log(w) if w > 0 else -math.inf


EXACT = 1 << 1100  # every finite double is an integer multiple of 2**-1074
ZERO_WEIGHT = -(1 << 1300)  # log 0: below any sum of finite logs (each > -2**1110)


def _exact(x: float) -> int:
    """A log-weight as an exact integer (x * 2**1100): the DP then adds scores without
    rounding, so a tiny difference is never absorbed into a large sum. log 0 = -inf becomes
    `ZERO_WEIGHT`, so among architectures that need a zero weight, fewer of them win."""
    if x == -math.inf:
        return ZERO_WEIGHT
    n, d = x.as_integer_ratio()
    return n * (EXACT // d)


def darts_rule(ir: IR, weights: Mapping[str, Sequence[float]],
               st: Structure | None = None) -> Arch | None:
    """DARTS's derivation, generalized: top-k edges by strength at each keep node (stable),
    then the first argmax among the allowed candidates of every decided choice. None when
    that would decide a choice with no candidate (only `none`, on a kept edge)."""
    st = st or structure(ir)
    keeps: dict[str, tuple[int, ...]] = {}
    for n, p in st.order:
        if not (isinstance(p, CombineNode) and p.keep is not None) or p.select in keeps:
            continue
        strength = []
        for pos in range(len(p.inputs)):
            c = st.edge_choice.get((n, pos))
            if c is None:
                strength.append(1.0)
            else:
                w = weights[ir.node(c).alpha]
                strength.append(max((w[i] for i in st.allowed(ir, c)), default=-math.inf))
        order = sorted(range(len(p.inputs)), key=lambda i: -strength[i])
        keeps[p.select] = tuple(sorted(order[:p.keep]))
    kept = {n: keeps[p.select] for n, p in st.order
            if isinstance(p, CombineNode) and p.keep is not None}
    choices: dict[str, str] = {}
    for n, p in st.choices:
        if p.alpha in choices or not st.active(n, kept):
            continue
        w = weights[p.alpha]
        allowed = st.allowed(ir, n)
        if not allowed:
            return None
        best = max(allowed, key=lambda i: (w[i], -i))
        choices[p.alpha] = p.candidates[best].name
    return Arch(tuple(choices.items()), tuple(keeps.items()))


def arch_score(ir: IR, weights: Mapping[str, Sequence[float]], arch: Arch) -> float:
    """The objective: Σ log w over the decided choices of `arch` (each α key once)."""
    index = {p.alpha: [c.name for c in p.candidates] for _, p in ir.choices()}
    return sum(_log(weights[k][index[k].index(op)]) for k, op in arch.choices)


def discretize(ir: IR, scores: Mapping[str, Sequence[float]], *, mode: str = "darts",
               gate: str | None = None, threshold: float = 0.5,
               rules: Sequence[Rule] | None = None, exact: bool = False,
               budget: BudgetRule | None = None) -> Arch:
    """The highest-scoring architecture satisfying `rules` (default: the space's).

    `gate`, the search's gate kind, sets the mode when given: `sigmoid` gates get threshold
    semantics, `softmax` and `gumbel` DARTS's. `exact=True` always runs the DP (tests use it to
    check that the DP alone agrees with DARTS's rule); the default returns DARTS's
    architecture when it satisfies the rules.

    `budget` (compiler/budget.py) is one more rule: the derived network's cost may not exceed
    it, and the answer is the highest-scoring architecture within it (the same DP, which
    carries the accumulated cost in its state).
    """
    if gate is not None:
        mode = "sigmoid" if gate == "sigmoid" else "darts"
    st = structure(ir)
    weights = gate_weights(ir, scores, mode, threshold)
    space_rules = tuple(ir.rules if rules is None else rules)
    rules = space_rules + ((budget,) if budget is not None else ())
    if not exact:
        arch = darts_rule(ir, weights, st)
        if arch is not None and (not rules or not violations(ir, arch, rules, st=st)):
            return arch
    logs = {k: [_exact(_log(v)) for v in w] for k, w in weights.items()}
    alpha = {n: p.alpha for n, p in ir.choices()}
    decisions = best_decisions(ir, lambda c, i: logs[alpha[c]][i], rules, st)
    if decisions is None and budget is not None:
        raise unmet(ir, budget, space_rules)
    if decisions is None:
        raise ConstraintError(f"no architecture of space '{ir.name}' satisfies its "
                              f"constraints", span=rules[0].span if rules else ir.span,
                              hint="run `dasc compile` for the rule and path to blame")
    return from_decisions(decisions)
