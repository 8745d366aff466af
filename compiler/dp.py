"""One dynamic program over a region's DAG, parameterised by a semiring.

Counting architectures, checking constraints, exact constrained discretization and uniform
sampling are the same sweep: walk the region's nodes in topological order, and at each decision
(a choice point picks a candidate, a `keep k` sum picks k inputs) branch on the options. What
varies is what a branch is worth: a multiplicity (counting, sampling) or a score with a
back-pointer (discretization). That is the semiring (`count.Counting`, `count.MaxScore`): a
sweep only asks it for `one`, `plus`, `times` and the `weight` of a branch.

Why it stays linear: the DP state holds only what later nodes can still see, namely

* for each path tracker (a `constraint paths` rule), the minimum number of non-skip ops over
  paths from the rule's sources to every node that is still needed later (the frontier),
  capped at the rule's k, with `INF` for "no path" (the tensor is zero in this architecture:
  every path through it was cut by `none` or by `keep`);
* for each count tracker (a `constraint count` rule), the running count, pruned above the cap;
* for each shared cell kind met in the network, the profile its instances were given.

Candidates with the same effect on that state (zero? skip? which capped op?) are one branch, so
a DARTS edge with 7 ops is 1 to 3 branches, and the state space is bounded by the frontier
width, not by the number of choice points.

A cell kind whose α is shared by several instances cannot be inlined into the network's sweep
(its decisions would repeat), so it is solved once on its representative and enters the network
sweep as an `opaque` step whose options are its *profiles*: per network-level rule, the
non-skip distance from each cell input to the cell output, and the count of the capped op.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from dasc.compiler.arch import Structure
from dasc.compiler.ir import IR, ChoiceNode, CombineNode

INF = 1 << 30  # "no path": distinct from the cap, which means ">= k"
MAX_STATES = 2_000_000  # beyond this a sweep would take minutes: refuse, do not hang


class TooManyStates(Exception):
    """The rules make the DP state space explode at `node` (count.solve reports it)."""

    def __init__(self, node: str, states: int) -> None:
        super().__init__(f"{states} DP states at {node}")
        self.node, self.states = node, states
FIXED, CHOICE, KEEP, OPAQUE = "fixed", "choice", "keep", "opaque"


# ----------------------------------------------------------------------------- the DAG

@dataclass(frozen=True)
class Step:
    """One node of the sweep. KEEP: `inputs` are the edge sources by position and `edges` the
    deferred choice on each (or None). OPAQUE: a shared cell instance, `inputs` its arguments."""

    node: str
    kind: str
    inputs: tuple[str, ...] = ()
    edges: tuple[str | None, ...] = ()
    k: int = 0
    unit: str = ""
    first: bool = False
    last: bool = False


def build_dag(ir: IR, st: Structure, members: set[str], sources: Sequence[str] = (),
              opaque: Mapping[str, str] | None = None) -> tuple[Step, ...]:
    """The steps of one sweep: `sources` (outside nodes read as inputs) first, then `members`
    in topological order; each instance in `opaque` (region id -> unit key) is one step."""
    opaque = opaque or {}
    steps = [Step(s, FIXED) for s in dict.fromkeys(sources)]
    outs = {st.region(rid).output: rid for rid in opaque}
    for n, p in st.order:
        if n in outs:
            r = st.region(outs[n])
            steps.append(Step(n, OPAQUE, tuple(r.inputs), unit=opaque[r.id]))
            continue
        if n not in members or n in st.deferred:
            continue
        if isinstance(p, ChoiceNode):
            steps.append(Step(n, CHOICE, tuple(p.inputs)))
        elif isinstance(p, CombineNode) and p.keep is not None:
            edges = tuple(st.edge_choice.get((n, i)) for i in range(len(p.inputs)))
            ins = tuple(ir.node(c).inputs[0] if c else x for c, x in zip(edges, p.inputs))
            steps.append(Step(n, KEEP, ins, edges, k=p.keep))
        else:
            steps.append(Step(n, FIXED, tuple(p.inputs)))
    for unit in dict.fromkeys(opaque.values()):
        idx = [i for i, s in enumerate(steps) if s.kind == OPAQUE and s.unit == unit]
        for i in idx:
            steps[i] = replace(steps[i], first=i == idx[0], last=i == idx[-1])
    return tuple(steps)


# ----------------------------------------------------------------------------- trackers

@dataclass(frozen=True)
class PathTracker:
    """Minimum non-skip ops from `sources` to each node, capped at `cap`; checked (value must
    be >= cap or INF) or, if `report`, recorded at `target`. `scope=None`: every node of the
    sweep; else nodes outside it are INF. `net` >= 0: a network-level rule, which reads the
    opaque steps' profiles at that index."""

    sources: frozenset[str]
    cap: int
    target: str
    report: bool = False
    scope: frozenset[str] | None = None
    net: int = -1


@dataclass(frozen=True)
class CountTracker:
    """Number of decided choices (in `scope`, None: all) picking op `op`; states above `limit`
    are pruned. `report`: the final count is part of the profile. `net` as for paths.

    `weights` (α key -> integer per candidate) turns the count into a weighted sum, which is
    how a cost budget (compiler/budget.py) rides on the same sweep: picking candidate i adds
    weights[α][i] instead of 1. The weights of a shared α already sum over its instances, so
    an opaque unit's total enters the network once, not times the instance count.
    """

    op: str
    limit: int
    report: bool = False
    scope: frozenset[str] | None = None
    net: int = -1
    weights: Mapping[str, Sequence[int]] | None = field(default=None, compare=False)

    def amount(self, node: ChoiceNode, choice_id: str, i: int) -> int:
        """What picking candidate i of this choice adds to the count (0: untouched)."""
        if self.scope is not None and choice_id not in self.scope:
            return 0
        if self.weights is not None:
            return int(self.weights[node.alpha][i]) if node.alpha in self.weights else 0
        return int(node.candidates[i].op == self.op)


@dataclass(frozen=True)
class Decision:
    """A leaf of a back-pointer: `choice` (α key, candidate name), `keep` (select key,
    positions) or `unit` (sharing key, the profile its cell instances were given)."""

    kind: str
    key: str
    value: Any


# ----------------------------------------------------------------------------- the sweep

@dataclass
class Sweep:
    """One forward pass over `steps` with the given trackers; `tables` hold, per unit key, the
    value of each profile of the shared cell (for OPAQUE steps) and `mult` its instance count.

    A state is (values of live nodes, counts, reported path values, pending unit profiles).
    """

    ir: IR
    st: Structure
    steps: tuple[Step, ...]
    paths: tuple[PathTracker, ...]
    counts: tuple[CountTracker, ...]
    sr: Any
    tables: Mapping[str, Mapping[tuple, Any]] = field(default_factory=dict)
    mult: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        P = len(self.paths)
        self.units = list(dict.fromkeys(s.unit for s in self.steps if s.kind == OPAQUE))
        self.unit_pos = {u: i for i, u in enumerate(self.units)}
        self.report_slot = {i: j for j, i in enumerate(i for i, t in enumerate(self.paths)
                                                          if t.report)}
        last: dict[str, int] = {}
        if P:
            for i, s in enumerate(self.steps):
                for x in s.inputs:
                    last[x] = i
        self.layout: list[tuple[tuple[int, ...], tuple[int, ...], bool]] = []
        live: list[str] = []
        for i, s in enumerate(self.steps):
            pos = {n: j for j, n in enumerate(live)}
            if P and any(x not in pos for x in s.inputs):
                missing = next(x for x in s.inputs if x not in pos)
                raise ValueError(f"dp: {s.node} reads {missing}, which no earlier step made")
            in_idx = tuple(pos[x] for x in s.inputs) if P else ()
            carry = tuple(j for j, n in enumerate(live) if last[n] > i)
            store = last.get(s.node, -1) > i
            self.layout.append((in_idx, carry, store))
            live = [live[j] for j in carry] + ([s.node] if store else [])
        self.checks = [[t for t, tr in enumerate(self.paths) if tr.target == s.node]
                       for s in self.steps]
        self._plan_retirement()
        targets = {s.node for s in self.steps}
        for tr in self.paths:
            if tr.target not in targets:
                raise ValueError(f"dp: path target {tr.target} is not in the sweep")
        self.infos = [self._branches(s) for s in self.steps]
        self.options = [[(self.sr.one if info is None else self.sr.weight(self.ir, info), eff)
                         for info, eff in branches] for branches in self.infos]

    def _plan_retirement(self) -> None:
        """When a checked tracker can no longer change anything, its values are reset to a
        constant, so states that differ only there merge: a path tracker after its target
        step, a scoped count tracker after the last decision in its scope. Without this, every
        instance of an inlined cell rule would multiply the states of all later ones."""
        self.done = {t: i for i, ts in enumerate(self.checks) for t in ts}
        self.retire_paths = [frozenset(t for t in ts if not self.paths[t].report)
                             for ts in self.checks]
        last: dict[int, int] = {}
        for i, s in enumerate(self.steps):
            ids = [s.node] if s.kind == CHOICE else [c for c in s.edges if c]
            for j, t in enumerate(self.counts):
                if t.scope is not None and not t.report and any(c in t.scope for c in ids):
                    last[j] = i
        self.retire_counts = [frozenset(j for j, k in last.items() if k == i)
                              for i in range(len(self.steps))]

    def _groups(self, choice_id: str) -> list[tuple[tuple, tuple[int, ...]]]:
        node = self.ir.node(choice_id)
        groups: dict[tuple, list[int]] = {}
        for i in self.st.allowed(self.ir, choice_id):
            c = node.candidates[i]
            incs = tuple((j, a) for j, t in enumerate(self.counts)
                         if (a := t.amount(node, choice_id, i)))
            add = (None if c.zero else (0 if c.skip else 1)) if self.paths else 0
            groups.setdefault((add, incs), []).append(i)
        return [(sig, tuple(idx)) for sig, idx in groups.items()]

    def _branches(self, s: Step) -> list[tuple[tuple | None, tuple | None]]:
        """(info, effect) per branch of step s; the semiring turns info into a weight, and
        sampling turns it back into decisions."""
        if s.kind == CHOICE:
            return [(("choice", s.node, idx), sig) for sig, idx in self._groups(s.node)]
        if s.kind == KEEP:
            per_edge = [self._groups(c) if c else [((0, ()), None)] for c in s.edges]
            out = []
            for subset in itertools.combinations(range(len(s.edges)), s.k):
                for picks in itertools.product(*(per_edge[p] for p in subset)):
                    info = ("keep", s.node, subset,
                            tuple((s.edges[p], idx) for p, (_, idx) in zip(subset, picks)))
                    adds = tuple(sig[0] for sig, _ in picks)
                    incs = tuple(j for sig, _ in picks for j in sig[1])
                    out.append((info, (subset, adds, incs)))
            return out
        if s.kind == OPAQUE and s.first:
            table = self.tables[s.unit]
            return [(("unit", s.unit, prof, val), prof) for prof, val in table.items()]
        return [(None, None)]

    def initial(self) -> tuple:
        return ((), (0,) * len(self.counts), (None,) * len(self.report_slot),
                (None,) * len(self.units))

    def apply(self, i: int, state: tuple, eff: tuple | None) -> tuple | None:
        """The state after step i takes the branch with effect `eff`, or None if pruned."""
        s = self.steps[i]
        vals, cnts, reps, pend = state
        if s.kind in (CHOICE, KEEP) and eff[-1 if s.kind == KEEP else 1]:
            c = list(cnts)
            for j, a in eff[-1 if s.kind == KEEP else 1]:
                c[j] += a
            cnts = tuple(c)
        dpart = None
        if s.kind == OPAQUE:
            u = self.unit_pos[s.unit]
            if s.first:
                dpart, cpart = eff
                m = self.mult.get(s.unit, 1)
                cnts = tuple(v + ((1 if t.weights is not None else m) * cpart[t.net]
                                  if t.net >= 0 else 0) for v, t in zip(cnts, self.counts))
            else:
                dpart = pend[u]
            if s.first != s.last:
                pend = pend[:u] + ((None if s.last else dpart),) + pend[u + 1:]
        for v, t in zip(cnts, self.counts):
            if v > t.limit:
                return None
        if self.retire_counts[i]:
            cnts = tuple(0 if j in self.retire_counts[i] else v for j, v in enumerate(cnts))
        if not self.paths:
            return ((), cnts, reps, pend)
        in_idx, carry, store = self.layout[i]
        ins = [vals[j] for j in in_idx]
        value = tuple(INF if self.done[t] < i else self._value(s, t, tr, ins, eff, dpart)
                      for t, tr in enumerate(self.paths))
        for t in self.checks[i]:
            tr = self.paths[t]
            if tr.report:
                slot = self.report_slot[t]
                reps = reps[:slot] + (value[t],) + reps[slot + 1:]
            elif value[t] < tr.cap:
                return None
        gone = self.retire_paths[i]
        vals = tuple(vals[j] for j in carry) + ((value,) if store else ())
        if gone:
            vals = tuple(tuple(INF if t in gone else v for t, v in enumerate(x)) for x in vals)
        return (vals, cnts, reps, pend)

    def _value(self, s: Step, t: int, tr: PathTracker, ins: list, eff: Any, dpart: Any) -> int:
        if s.node in tr.sources:
            return 0
        if tr.scope is not None and s.node not in tr.scope:
            return INF
        if s.kind == FIXED:
            return min((x[t] for x in ins), default=INF)
        if s.kind == CHOICE:
            return _add(ins[0][t], eff[0], tr.cap)
        if s.kind == KEEP:
            subset, adds, _ = eff
            return min((_add(ins[p][t], a, tr.cap) for p, a in zip(subset, adds)), default=INF)
        if tr.net < 0 or dpart is None:
            return INF
        return min((_add(x[t], d, tr.cap) for x, d in zip(ins, dpart[tr.net])), default=INF)

    def forward(self, layers: list | None = None) -> dict[tuple, Any]:
        """Final states and their values; if `layers` is a list, the state dict before each
        step is appended to it (for backward sampling)."""
        sr = self.sr
        states: dict[tuple, Any] = {self.initial(): sr.one}
        for i in range(len(self.steps)):
            if layers is not None:
                layers.append(states)
            new: dict[tuple, Any] = {}
            for state, val in states.items():
                for w, eff in self.options[i]:
                    ns = self.apply(i, state, eff)
                    if ns is None:
                        continue
                    nv = sr.times(val, w)
                    old = new.get(ns)
                    new[ns] = nv if old is None else sr.plus(old, nv)
                if len(new) > MAX_STATES:
                    raise TooManyStates(self.steps[i].node, len(new))
            states = new
            if not states:
                break
        return states

    def profile(self, state: tuple) -> tuple[tuple, tuple]:
        """(reported path values, reported counts) of a final state."""
        _, cnts, reps, _ = state
        return reps, tuple(v for v, t in zip(cnts, self.counts) if t.report)

    def sample_back(self, layers: list, state: tuple, rng: Any) -> list[Decision]:
        """Walk back from a final state, picking each predecessor branch with probability
        proportional to its count: uniform over the architectures reaching that state."""
        out: list[Decision] = []
        for i in reversed(range(len(layers))):
            branches, total = [], 0
            for prev, val in layers[i].items():
                for j, (w, eff) in enumerate(self.options[i]):
                    if self.apply(i, prev, eff) == state:
                        branches.append((val * w, prev, j))
                        total += val * w
            r = rng.randrange(total)
            for weight, prev, j in branches:
                if r < weight:
                    break
                r -= weight
            out.extend(self._realize(self.infos[i][j][0], rng))
            state = prev
        out.reverse()
        return out

    def _realize(self, info: tuple | None, rng: Any) -> list[Decision]:
        """The decisions of one branch: a uniform candidate within each group."""
        if info is None:
            return []
        if info[0] == "unit":
            return [Decision("unit", info[1], info[2])]
        picks = [(info[1], info[2])] if info[0] == "choice" else list(info[3])
        out = [] if info[0] == "choice" else [
            Decision("keep", self.ir.node(info[1]).select, info[2])]
        for c, idx in picks:
            if c is not None:
                node = self.ir.node(c)
                out.append(Decision("choice", node.alpha, node.candidates[rng.choice(idx)].name))
        return out


def _add(value: int, step: int | None, cap: int) -> int:
    """value + step, capped; `None` (a `none` op) or an INF operand gives INF."""
    if step is None or value >= INF or step >= INF:
        return INF
    return min(value + step, cap)
