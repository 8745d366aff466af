"""Counting architectures, and what counting, discretization and sampling share: the two
semirings of the DP (`Counting`: Python ints; `MaxScore`: score and back-pointer) and the solve
across regions.

`Plan` decides what is swept where: every sharing key with several instances is a `Unit` swept
once on its representative (its decisions are made once for all instances); cell instances
with a key of their own are inlined into the network's sweep, so a chain of independent cells
is one linear sweep. A rule becomes trackers (dp.py) in the sweeps it concerns:

* `in CELL`: each instance of the cell on its own; with shared α, each sharing key once.
* no `in`: the whole network, cells included, each cell instance counted separately (a cap of
  4 skip-connects over 6 instances of a shared cell allows none in that cell). Exact: a shared
  cell kind enters the network sweep through its profiles (dp.py).
* a cost budget (budget.py) is a network-level count whose increments are costs; its weights
  already sum over the instances sharing an α, so a shared cell's cost enters once.

The total number of architectures is the network sweep's count, in which each unit's count
appears once (the product over sharing keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from dasc.compiler.arch import NETWORK, Structure, structure
from dasc.compiler.budget import BudgetRule
from dasc.compiler.dp import (
    CountTracker, Decision, PathTracker, Step, Sweep, TooManyStates, build_dag,
)
from dasc.compiler.ir import IR, CountRule, PathRule, Region, Rule
from dasc.errors import ConstraintError

BIG = 1 << 40  # a count limit that prunes nothing


@dataclass(frozen=True)
class Counts:
    """Architectures in the space, and those satisfying its constraints."""

    total: int
    satisfying: int


def count_architectures(ir: IR) -> Counts:
    """Exact counts without enumeration (Python ints, however large)."""
    st = structure(ir)
    total = count_satisfying(ir, (), st)
    satisfying = count_satisfying(ir, ir.rules, st) if ir.rules else total
    return Counts(total, satisfying)


# ----------------------------------------------------------------------------- semirings

def flatten(ptr: Any) -> list[Decision]:
    """The decisions of a nested back-pointer, in the order they were made."""
    out: list[Decision] = []
    stack = [ptr]
    while stack:
        x = stack.pop()
        if isinstance(x, Decision):
            out.append(x)
        elif isinstance(x, tuple):
            stack.extend(reversed(x))
    return out


class Counting:
    """Values are Python ints: the number of architectures reaching a state."""

    one = 1

    @staticmethod
    def plus(a: int, b: int) -> int:
        return a + b

    @staticmethod
    def times(a: int, b: int) -> int:
        return a * b

    def weight(self, ir: IR, info: tuple) -> int:
        if info[0] == "choice":
            return len(info[2])
        if info[0] == "keep":
            w = 1
            for _, idx in info[3]:
                w *= len(idx) if idx is not None else 1
            return w
        return info[3]  # unit: the count of that profile


@dataclass
class MaxScore:
    """Values are (score, back-pointer); ties keep the first branch found (deterministic).

    `score(choice_id, candidate_index)` is the gain of picking that candidate: an int (sums
    are then exact; discretize scales its log-weights so) or -inf.
    """

    score: Callable[[str, int], float]
    one: tuple = (0, None)

    @staticmethod
    def plus(a: tuple, b: tuple) -> tuple:
        return a if a[0] >= b[0] else b

    @staticmethod
    def times(a: tuple, b: tuple) -> tuple:
        if a[1] is None:
            return (a[0] + b[0], b[1])
        return (a[0] + b[0], a[1] if b[1] is None else (a[1], b[1]))

    def best(self, ir: IR, choice_id: str, idx: Sequence[int]) -> tuple:
        i = max(idx, key=lambda j: (self.score(choice_id, j), -j))
        node = ir.node(choice_id)
        return (self.score(choice_id, i), Decision("choice", node.alpha, node.candidates[i].name))

    def weight(self, ir: IR, info: tuple) -> tuple:
        if info[0] == "choice":
            return self.best(ir, info[1], info[2])
        if info[0] == "keep":
            val: tuple = (0, Decision("keep", ir.node(info[1]).select, info[2]))
            for c, idx in info[3]:
                if c is not None:
                    val = self.times(val, self.best(ir, c, idx))
            return val
        return (info[3][0], (Decision("unit", info[1], info[2]), info[3][1]))


# ----------------------------------------------------------------------------- plans

@dataclass(frozen=True)
class Unit:
    """A sharing key with several instances: swept once on its representative `rep`."""

    key: str
    rep: Region
    size: int
    steps: tuple[Step, ...]
    paths: tuple[PathTracker, ...]
    counts: tuple[CountTracker, ...]
    n_net_paths: int


@dataclass(frozen=True)
class Plan:
    """Units plus the network sweep (network body and inlined cell instances)."""

    ir: IR
    st: Structure
    units: tuple[Unit, ...]
    steps: tuple[Step, ...]
    paths: tuple[PathTracker, ...]
    counts: tuple[CountTracker, ...]


def reps(st: Structure) -> dict[str, list[Region]]:
    """Cell regions grouped by sharing key, representative first."""
    groups: dict[str, list[Region]] = {}
    for r in st.regions:
        if r.id != NETWORK:
            groups.setdefault(r.key, []).append(r)
    return {k: sorted(v, key=lambda r: not r.representative) for k, v in groups.items()}


def make_plan(ir: IR, rules: Sequence[Rule], st: Structure | None = None,
              report: bool = False) -> Plan:
    """Trackers for `rules`; `report`: network-level rules are recorded, not enforced (used
    to explain an unsatisfiable rule by the best that can be achieved)."""
    st = st or structure(ir)
    net_paths = [r for r in rules if isinstance(r, PathRule) and r.cell is None
                 and r.min_nonskip > 0]
    net_counts = [r for r in rules if isinstance(r, (CountRule, BudgetRule)) and r.cell is None]
    groups = reps(st)
    units, opaque, inlined = [], {}, []
    for key, rs in groups.items():
        if len(rs) == 1:
            inlined.append(rs[0])
            continue
        rep, m = _profile_instance(rs), len(rs)
        paths = [PathTracker(frozenset(rep.inputs), r.min_nonskip, rep.output)
                 for r in _cell_rules(rules, PathRule, rep.cell)]
        counts = [CountTracker(r.op, r.max_count) for r in _cell_rules(rules, CountRule, rep.cell)]
        for j, r in enumerate(net_paths):
            paths += [PathTracker(frozenset([x]), r.min_nonskip, rep.output, report=True, net=j)
                      for x in rep.inputs]
        for j, r in enumerate(net_counts):
            weights = r.weights if isinstance(r, BudgetRule) else None
            limit = BIG if report else r.max_count // (1 if weights is not None else m)
            counts.append(CountTracker(r.op, limit, report=True, net=j, weights=weights))
        steps = build_dag(ir, st, st.members(rep.id), rep.inputs)
        units.append(Unit(key, rep, m, steps, tuple(paths), tuple(counts), len(net_paths)))
        opaque.update({r.id: key for r in rs})
    here = {NETWORK} | {r.id for r in inlined}
    members = {n for n, o in st.owner.items() if o in here}
    paths = [PathTracker(frozenset([ir.input]), r.min_nonskip, ir.output, report=report, net=j)
             for j, r in enumerate(net_paths)]
    counts = [CountTracker(r.op, BIG if report else r.max_count, report=report, net=j,
                           weights=r.weights if isinstance(r, BudgetRule) else None)
              for j, r in enumerate(net_counts)]
    for reg in inlined:
        scope = frozenset(st.members(reg.id))
        paths += [PathTracker(frozenset(reg.inputs), r.min_nonskip, reg.output, scope=scope)
                  for r in _cell_rules(rules, PathRule, reg.cell)]
        counts += [CountTracker(r.op, r.max_count, scope=scope)
                   for r in _cell_rules(rules, CountRule, reg.cell)]
    steps = build_dag(ir, st, members, (), opaque)
    return Plan(ir, st, tuple(units), steps, tuple(paths), tuple(counts))


def _profile_instance(instances: Sequence[Region]) -> Region:
    """The instance of a shared cell whose subgraph gives its per-input profile.

    A network-level rule needs the distance from each input *position* of the cell to its
    output. An instance called with one tensor in two positions (the first DARTS cell gets
    `s0 = s1 = stem`) cannot tell those positions apart, so it would report a path from an
    unused input; the instance with the most distinct inputs can. Its merged positions must be
    merged in every other instance too, or no single profile is exact for all of them.
    """
    def classes(r: Region) -> list[set[int]]:
        return [{i for i, y in enumerate(r.inputs) if y == x} for x in dict.fromkeys(r.inputs)]

    best = max(instances, key=lambda r: len(set(r.inputs)))
    for other in instances:
        if not all(any(c <= d for d in classes(other)) for c in classes(best)):
            raise ConstraintError(
                f"cell '{best.cell}' is called with the same tensor in different argument "
                f"positions at {best.id} and {other.id}, so its constraints cannot be decided "
                "exactly", span=other.span,
                hint="pass distinct tensors to the cell in at least one call, or state the "
                     "`paths` rule per cell (`in CELL`)")
    return best


def _cell_rules(rules: Iterable[Rule], kind: type, cell: str | None) -> list:
    return [r for r in rules if isinstance(r, kind) and r.cell is not None and r.cell == cell
            and not (isinstance(r, PathRule) and r.min_nonskip <= 0)]


# ----------------------------------------------------------------------------- solving

@dataclass
class Solved:
    """The sweeps of a plan after the forward pass (layers kept only when sampling)."""

    units: dict[str, Unit]
    unit_sweeps: dict[str, Sweep]
    unit_finals: dict[str, dict]
    unit_layers: dict[str, list]
    sweep: Sweep
    final: dict
    layers: list | None


def _profile(sweep: Sweep, unit: Unit, state: tuple) -> tuple:
    """A unit's final state as the network sees it: (distances per rule per input, counts)."""
    rep, cnt = sweep.profile(state)
    n = len(unit.rep.inputs)
    dpart = tuple(tuple(rep[j * n:(j + 1) * n]) for j in range(unit.n_net_paths))
    return dpart, cnt


def solve(plan: Plan, sr: Any, keep_layers: bool = False) -> Solved:
    """Sweep each unit, tabulate its profiles, then sweep the network over those tables.
    ConstraintError if the rules blow the DP state space up (dp.MAX_STATES)."""
    try:
        return _solve(plan, sr, keep_layers)
    except TooManyStates as exc:
        rules = plan.ir.rules
        raise ConstraintError(
            f"the constraints are too intricate to decide exactly: {exc.states:,} DP states "
            f"at node {exc.node}", span=rules[0].span if rules else plan.ir.span,
            hint="state `paths` rules per cell (`in CELL`) or lower their bounds and caps "
                 "(the DP tracks every value up to them)") from None


def _solve(plan: Plan, sr: Any, keep_layers: bool) -> Solved:
    sweeps, finals, layers_of, tables = {}, {}, {}, {}
    for u in plan.units:
        sweep = Sweep(plan.ir, plan.st, u.steps, u.paths, u.counts, sr)
        layers: list | None = [] if keep_layers else None
        final = sweep.forward(layers)
        table: dict[tuple, Any] = {}
        for state, val in final.items():
            prof = _profile(sweep, u, state)
            table[prof] = sr.plus(table[prof], val) if prof in table else val
        sweeps[u.key], finals[u.key], layers_of[u.key], tables[u.key] = sweep, final, layers, table
    sweep = Sweep(plan.ir, plan.st, plan.steps, plan.paths, plan.counts, sr, tables,
                  {u.key: u.size for u in plan.units})
    layers = [] if keep_layers else None
    final = sweep.forward(layers)
    return Solved({u.key: u for u in plan.units}, sweeps, finals, layers_of, sweep, final,
                  layers)


def count_satisfying(ir: IR, rules: Sequence[Rule], st: Structure | None = None) -> int:
    """The number of architectures satisfying `rules` (all of them: pass `()` for the total)."""
    solved = solve(make_plan(ir, rules, st), Counting())
    return sum(solved.final.values())


def best_decisions(ir: IR, score: Any, rules: Sequence[Rule],
                   st: Structure | None = None) -> list[Decision] | None:
    """The decisions of a highest-scoring architecture satisfying `rules` (None if none)."""
    solved = solve(make_plan(ir, rules, st), MaxScore(score))
    if not solved.final:
        return None
    best = None
    for val in solved.final.values():
        best = val if best is None else MaxScore.plus(best, val)
    return flatten(best[1])


def sample_decisions(ir: IR, rng: Any, rules: Sequence[Rule],
                     st: Structure | None = None) -> list[Decision] | None:
    """Decisions of an architecture drawn uniformly from those satisfying `rules`."""
    solved = solve(make_plan(ir, rules, st), Counting(), keep_layers=True)
    state = _pick(rng, solved.final.items())
    if state is None:
        return None
    out = solved.sweep.sample_back(solved.layers, state, rng)
    for d in [d for d in out if d.kind == "unit"]:
        sweep, unit = solved.unit_sweeps[d.key], solved.units[d.key]
        matching = [(s, v) for s, v in solved.unit_finals[d.key].items()
                    if _profile(sweep, unit, s) == d.value]
        out += sweep.sample_back(solved.unit_layers[d.key], _pick(rng, matching), rng)
    return out


def _pick(rng: Any, items: Iterable[tuple[Any, int]]) -> Any:
    items = list(items)
    total = sum(v for _, v in items)
    if total == 0:
        return None
    r = rng.randrange(total)
    for s, v in items:
        if r < v:
            return s
        r -= v
    raise AssertionError("unreachable")
