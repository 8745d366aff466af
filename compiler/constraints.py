"""Constraint rules: the compile-time satisfiability check, and checking one architecture.

Semantics (docs/architecture.md): a path rule counts the ops chosen at choice points that are
not skip ops along every path from the region's inputs to its output; fixed ops and adapters
count 0; an edge whose op is `none`, or that a `keep` dropped, is on no path, and a region
output that no path reaches satisfies the rule vacuously (its tensor is zero). A count rule
caps the number of decided choices picking the op. `in CELL` applies a rule to each instance of
the cell; without `in` it applies to the whole network, cells included (see count.py).

`check_satisfiable` counts with the DP (count.py); when nothing satisfies the rules it finds
the rule to blame and explains it with the best an architecture can do: the architecture
whose worst path has the most non-skip ops, and that path, node by node. `violations` checks
a given architecture directly on its derived graph, with no DP: it is what `derive` reports
and what the tests use as the oracle for the DP.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from dasc.compiler.arch import NETWORK, Structure, from_decisions, structure
from dasc.compiler.budget import BudgetRule, violation
from dasc.compiler.count import BIG, MaxScore, count_satisfying, flatten, make_plan, reps, solve
from dasc.compiler.dp import INF, CountTracker, PathTracker, Sweep, build_dag
from dasc.compiler.ir import IR, ChoiceNode, CombineNode, PathRule, Region, Rule
from dasc.errors import ConstraintError


def describe(rule: Rule) -> str:
    """The rule as written in the language."""
    if isinstance(rule, BudgetRule):
        return rule.describe()
    where = f" in {rule.cell}" if rule.cell else ""
    if isinstance(rule, PathRule):
        return f"constraint paths{where} >= {rule.min_nonskip}"
    return f"constraint count {rule.op}{where} <= {rule.max_count}"


def check_satisfiable(ir: IR) -> None:
    """ConstraintError naming the rule (its span) and a violating path unless some
    architecture satisfies every rule of the space."""
    if not ir.rules:
        return
    st = structure(ir)
    if count_satisfying(ir, ir.rules, st) > 0:
        return
    if count_satisfying(ir, (), st) == 0:
        raise ConstraintError(f"space '{ir.name}' has no architecture at all", span=ir.span,
                              hint="a choice on a keep edge needs a candidate other than none")
    for rule in ir.rules:
        if count_satisfying(ir, (rule,), st) == 0:
            raise _explain(ir, st, rule)
    raise ConstraintError(
        "no architecture satisfies all the constraints together (each alone can be met)",
        span=ir.rules[0].span, notes=tuple(f"{describe(r)} ({r.span})" for r in ir.rules),
        hint="relax one of them: lower a `paths` bound or raise a `count` cap")


# ----------------------------------------------------------------------------- explanations

def _explain(ir: IR, st: Structure, rule: Rule) -> ConstraintError:
    """The error for a rule that no architecture satisfies on its own."""
    if rule.cell is None:
        decisions = _best_network(ir, st, rule)
        region = st.region(NETWORK)
    else:
        region, decisions = _best_cell(ir, st, rule)
    chosen, kept = st.view(ir, from_decisions(decisions), partial=True)
    if isinstance(rule, PathRule):
        members = None if rule.cell is None else st.members(region.id)
        value, path = min_path(st, chosen, kept, members, region.inputs, region.output)
        where = "the network" if rule.cell is None else f"cell `{rule.cell}`"
        return ConstraintError(
            f"`{describe(rule)}` cannot be met: in every architecture some path through "
            f"{where} has at most {value} non-skip op{'s' * (value != 1)}",
            span=rule.span, notes=(f"for example {' -> '.join(path)}",),
            hint=f"lower the bound to {value}, add non-skip ops to the op sets on this path, "
                 f"or remove a `constraint count` cap")
    members = None if rule.cell is None else st.members(region.id)
    picks = [f"{p.alpha} ({n})" for n, p in st.choices if chosen.get(n) is not None
             and chosen[n].op == rule.op and (members is None or n in members)]
    return ConstraintError(
        f"`{describe(rule)}` cannot be met: every architecture picks `{rule.op}` at least "
        f"{len(picks)} time{'s' * (len(picks) != 1)}", span=rule.span,
        notes=(f"forced at: {', '.join(picks[:8])}{' ...' * (len(picks) > 8)}",),
        hint=f"raise the cap to {len(picks)}, or offer other ops on these choices")


def _best_cell(ir: IR, st: Structure, rule: Rule) -> tuple[Region, list]:
    """A representative of the rule's cell where the rule fails, and its best decisions."""
    worst = None
    for rs in reps(st).values():
        rep = rs[0]
        if rep.cell != rule.cell:
            continue
        steps = build_dag(ir, st, st.members(rep.id), rep.inputs)
        if isinstance(rule, PathRule):
            tr = (PathTracker(frozenset(rep.inputs), rule.min_nonskip, rep.output, report=True),)
            sweep = Sweep(ir, st, steps, tr, (), MaxScore(lambda c, i: 0))
            final = sweep.forward()
            state = max(final, key=lambda s: _path_key(sweep.profile(s)[0][0]))
            bad = _path_key(sweep.profile(state)[0][0]) < rule.min_nonskip
        else:
            tr = (CountTracker(rule.op, BIG, report=True),)
            sweep = Sweep(ir, st, steps, (), tr, MaxScore(lambda c, i: 0))
            final = sweep.forward()
            state = min(final, key=lambda s: sweep.profile(s)[1][0])
            bad = sweep.profile(state)[1][0] > rule.max_count
        if bad and worst is None:
            worst = (rep, flatten(final[state][1]))
    assert worst is not None, "a cell rule with no failing representative"
    return worst


def _best_network(ir: IR, st: Structure, rule: Rule) -> list:
    """Decisions of the architecture that comes closest to satisfying a network-level rule."""
    solved = solve(make_plan(ir, (rule,), st, report=True), MaxScore(lambda c, i: 0))
    sweep = solved.sweep
    if isinstance(rule, PathRule):
        state = max(solved.final, key=lambda s: _path_key(sweep.profile(s)[0][0]))
    else:
        state = min(solved.final, key=lambda s: sweep.profile(s)[1][0])
    return flatten(solved.final[state][1])


def _path_key(value: int) -> float:
    return float("inf") if value >= INF else value


# ----------------------------------------------------------------------------- one architecture

def min_path(st: Structure, chosen: dict[str, Any], kept: dict[str, tuple[int, ...]],
             members: set[str] | None, sources: Iterable[str], target: str
             ) -> tuple[int, list[str]]:
    """The fewest non-skip chosen ops on a path from `sources` to `target` in the derived
    graph (INF if none), and that path as readable node ids (fixed ops left out).

    `members=None`: the whole IR. Straight from the semantics, with no DP, so that it can
    check the DP.
    """
    sources = set(sources)
    dist: dict[str, int] = {}
    pred: dict[str, str | None] = {}
    for n, p in st.order:
        if n in sources:
            dist[n], pred[n] = 0, None
            continue
        if members is not None and n not in members:
            continue
        ins: Sequence[str] = p.inputs
        add = 0
        if isinstance(p, ChoiceNode):
            cand = chosen.get(n)
            ins = () if cand is None or cand.zero else p.inputs
            add = 0 if cand is None or cand.skip else 1
        elif isinstance(p, CombineNode) and p.keep is not None:
            ins = tuple(p.inputs[i] for i in kept[n])
        best = min(ins, key=lambda x: dist.get(x, INF), default=None)
        if best is None or dist.get(best, INF) >= INF:
            dist[n], pred[n] = INF, None
        else:
            dist[n], pred[n] = dist[best] + add, best
    value = dist.get(target, INF)
    path, cur = [], target if value < INF else None
    payload = dict(st.order)
    while cur is not None:
        p = payload[cur]
        if cur == target or cur in sources or not _plain(p):
            label = cur
            if isinstance(p, ChoiceNode) and chosen.get(cur) is not None:
                label = f"{cur} [{chosen[cur].name}]"
            path.append(label)
        cur = pred.get(cur)
    return value, path[::-1]


def _plain(p: Any) -> bool:
    return not isinstance(p, (ChoiceNode, CombineNode))


def violations(ir: IR, arch: Any, rules: Sequence[Rule] | None = None, *,
               st: Structure | None = None) -> list[str]:
    """Why `arch` breaks the rules (default: the space's), one line per broken rule and region
    (empty: it satisfies them all). Instances sharing α are checked once, on their
    representative. `st`: the IR's structure, if already at hand."""
    st = st or structure(ir)
    chosen, kept = st.view(ir, arch)
    out: list[str] = []
    for rule in ir.rules if rules is None else rules:
        if isinstance(rule, BudgetRule):  # a cost budget (compiler/budget.py)
            out += [v for v in (violation(ir, arch, rule, st),) if v]
            continue
        if rule.cell is None:
            regions = [(st.region(NETWORK), None)]
        else:
            regions = [(rs[0], st.members(rs[0].id)) for rs in reps(st).values()
                       if rs[0].cell == rule.cell]
        for region, members in regions:
            where = "network" if members is None else region.key
            if isinstance(rule, PathRule):
                value, path = min_path(st, chosen, kept, members, region.inputs, region.output)
                if value < rule.min_nonskip:
                    out.append(f"{describe(rule)}: {where}: path {' -> '.join(path)} has "
                               f"{value} non-skip op{'s' * (value != 1)}")
            else:
                picks = [n for n, p in st.choices if chosen[n] is not None
                         and chosen[n].op == rule.op and (members is None or n in members)]
                if len(picks) > rule.max_count:
                    out.append(f"{describe(rule)}: {where}: {len(picks)} choices pick "
                               f"{rule.op} ({', '.join(picks[:6])}{' ...' * (len(picks) > 6)})")
    return out
