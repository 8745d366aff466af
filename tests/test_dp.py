"""The DP engine, and the hand-built IRs (`build`) that the DP-based passes are tested on.

Why hand-built: the DP must be checked against brute force on many small, odd spaces (keeps of
every k, `none` and skip in random op sets, adapters between a choice and its sum, shared and
independent cells, network-level choices), far more shapes than the shipped `.das` files
have. `specs()` draws them for hypothesis; `build(spec)` turns one into an IR the way the
expand pass lays it out (region ids as scopes, α keys `<cell>[<key>].<local>`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import pytest
from hypothesis import strategies as st

from dasc.compiler.arch import structure
from dasc.compiler.count import Counting, MaxScore, count_satisfying, flatten
from dasc.compiler.dp import INF, CountTracker, PathTracker, Sweep, build_dag
from dasc.compiler.ir import (
    IR, BlockNode, Candidate, ChoiceNode, CombineNode, CountRule, InputNode, OpCall, OpNode,
    OutputNode, PathRule, Region,
)
from dasc.ops.registry import Shape

S = Shape(4, 8, 8)
OPS = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3")
ARGS = {"sep_conv_3x3": (("stride", 1), ("c", 4)), "skip_connect": (("stride", 1),),
        "none": (("stride", 1),), "max_pool_3x3": (("stride", 1),),
        "avg_pool_3x3": (("stride", 1),)}


@dataclass(frozen=True)
class Edge:
    """An input of a cell node: from state `src`; `ops` None is a fixed relu edge."""

    src: int
    ops: tuple[str, ...] | None
    adapter: bool = False


@dataclass(frozen=True)
class Node:
    edges: tuple[Edge, ...]
    keep: int | None = None


@dataclass(frozen=True)
class Spec:
    """A network: stem, optional network-level choice, `n_cells` chained cells, output."""

    n_in: int
    nodes: tuple[Node, ...]
    n_cells: int = 1
    shared: bool = True
    net_ops: tuple[str, ...] | None = None
    rules: tuple = ()


def candidate(op: str) -> Candidate:
    return Candidate(op, (BlockNode(OpCall(op, ARGS[op]), (-1,), S),),
                     skip=op == "skip_connect", zero=op == "none")


def _cell(ir: IR, scope: str, key: str, spec: Spec, inputs: list[str]) -> str:
    states = []
    for j, x in enumerate(inputs):
        ir.add(f"{scope}.p{j}", OpNode(OpCall("relu"), (x,), S, scope=scope))
        states.append(f"{scope}.p{j}")
    outs = []
    for j, node in enumerate(spec.nodes):
        nid, ins = f"{scope}.n{j}", []
        for i, e in enumerate(node.edges):
            src = states[e.src]
            if e.ops is None:
                ir.add(f"{nid}.f{i}", OpNode(OpCall("relu"), (src,), S, scope=scope))
                ins.append(f"{nid}.f{i}")
                continue
            eid = f"{nid}.e{i}"
            ir.add(eid, ChoiceNode(tuple(candidate(o) for o in e.ops), (src,),
                                   f"{key}.n{j}.e{i}", scope, S, scope=scope))
            if e.adapter:
                ir.add(f"{eid}.adapter", OpNode(OpCall("adapter", (("c", 4),)), (eid,), S,
                                                scope=scope, adapter="test adapter"))
                eid = f"{eid}.adapter"
            ins.append(eid)
        ir.add(nid, CombineNode("sum", tuple(ins), keep=node.keep,
                                select=f"{key}.n{j}" if node.keep else None, region=scope,
                                shape=S, scope=scope))
        states.append(nid)
        outs.append(nid)
    ir.add(f"{scope}.out", CombineNode("sum", tuple(outs), region=scope, shape=S, scope=scope))
    return f"{scope}.out"


def build(spec: Spec) -> IR:
    """The IR of `spec`, laid out as the expand pass does."""
    ir = IR("test", nx.DiGraph(), (("C", 4),))
    ir.add("x", InputNode("image", shape=S))
    ir.add("stem", OpNode(OpCall("relu"), ("x",), S))
    last = "stem"
    if spec.net_ops:
        ir.add("nc", ChoiceNode(tuple(candidate(o) for o in spec.net_ops), ("stem",),
                                "network.nc", "network", S))
        last = "nc"
    prev = [last] * spec.n_in
    regions = [Region("network", None, "network", ("x",), "out", True)]
    for i in range(spec.n_cells):
        scope = f"c{i}"
        key = "c[]" if spec.shared else f"c[{scope}]"
        out = _cell(ir, scope, key, spec, prev)
        regions.append(Region(scope, "c", key, tuple(prev), out, i == 0 or not spec.shared))
        prev = prev[1:] + [out]
    ir.add("head", OpNode(OpCall("relu"), (prev[-1],), S))
    ir.add("out", OutputNode(("head",), S))
    ir.regions = tuple(regions)
    ir.rules = spec.rules
    return ir


op_sets = st.lists(st.sampled_from(OPS), min_size=1, max_size=3, unique=True).map(tuple)
rules = st.one_of(
    st.builds(PathRule, st.sampled_from([None, "c"]), st.sampled_from([0, 1, 1, 2, 3])),
    st.builds(CountRule, st.sampled_from([None, "c"]), st.sampled_from(OPS), st.integers(0, 2)))


@st.composite
def specs(draw, max_cells: int = 3, min_rules: int = 0) -> Spec:
    """Random small spaces (hypothesis)."""
    n_in = draw(st.integers(1, 2))
    nodes = []
    for j in range(draw(st.integers(1, 3))):
        n_edges = draw(st.integers(1, 3))
        edges = tuple(Edge(draw(st.integers(0, n_in + j - 1)),
                           draw(st.one_of(st.none(), op_sets, op_sets)), draw(st.booleans()))
                      for _ in range(n_edges))
        nodes.append(Node(edges, draw(st.one_of(st.none(), st.integers(1, n_edges)))))
    return Spec(n_in, tuple(nodes), draw(st.integers(1, max_cells)), draw(st.booleans()),
                draw(st.one_of(st.none(), op_sets)),
                tuple(draw(st.lists(rules, min_size=min_rules, max_size=2))))


DARTS_CELL = tuple(Node(tuple(Edge(i, OPS) for i in range(2 + j)), keep=2) for j in range(4))


# ----------------------------------------------------------------------------- tests

def test_darts_like_cell_counts_by_hand():
    """One DARTS-like cell: C(2,2) C(3,2) C(4,2) C(5,2) * 4^8 (`none` never kept)."""
    ir = build(Spec(2, DARTS_CELL))
    assert count_satisfying(ir, ()) == 1 * 3 * 6 * 10 * 4 ** 8
    shared = build(Spec(2, DARTS_CELL, n_cells=3, shared=True))
    assert count_satisfying(shared, ()) == 1 * 3 * 6 * 10 * 4 ** 8
    independent = build(Spec(2, DARTS_CELL, n_cells=3, shared=False))
    assert count_satisfying(independent, ()) == (1 * 3 * 6 * 10 * 4 ** 8) ** 3


def test_none_is_a_choice_off_keep_edges():
    """NB201-style: no keep, so `none` counts (5^6 over a 4-node cell)."""
    nodes = tuple(Node(tuple(Edge(i, OPS) for i in range(j + 1))) for j in range(3))
    assert count_satisfying(build(Spec(1, nodes)), ()) == 5 ** 6


def test_candidates_with_one_effect_are_one_branch():
    """Grouping: a DARTS edge is 2 branches (skip / non-skip) under a path rule, not 4."""
    ir = build(Spec(2, DARTS_CELL, rules=(PathRule("c", 2),)))
    st_ = structure(ir)
    steps = build_dag(ir, st_, st_.members("c0"), ("stem",))
    tr = (PathTracker(frozenset(["stem"]), 2, "c0.out"),)
    sweep = Sweep(ir, st_, steps, tr, (), Counting())
    keep = next(i for i, s in enumerate(steps) if s.node == "c0.n0")
    assert len(sweep.options[keep]) == 2 * 2  # C(2,2) * 2 branches per edge
    assert len(sweep._groups("c0.n0.e0")) == 2


def test_state_stays_small_on_a_long_chain():
    """Linear time: 200 chained independent cells with a network-level path rule."""
    spec = Spec(1, (Node((Edge(0, ("skip_connect", "sep_conv_3x3")),)),), n_cells=200,
                shared=False, rules=(PathRule(None, 150), CountRule(None, "skip_connect", 60)))
    ir = build(spec)
    n = count_satisfying(ir, ir.rules)
    assert n == sum(math.comb(200, s) for s in range(0, 51))


def test_max_score_backpointers_give_the_decisions():
    ir = build(Spec(1, (Node((Edge(0, OPS), Edge(0, OPS)), keep=1),)))
    st_ = structure(ir)
    steps = build_dag(ir, st_, st_.members("c0"), ("stem",))
    score = {"c0.n0.e0": [0, 1, 2, 3, 4], "c0.n0.e1": [0, 1, 2, 9, 4]}
    sweep = Sweep(ir, st_, steps, (), (), MaxScore(lambda c, i: score[c][i]))
    (value,) = sweep.forward().values()
    assert value[0] == 9
    assert {(d.kind, d.key, d.value) for d in flatten(value[1])} == {
        ("keep", "c[].n0", (1,)), ("choice", "c[].n0.e1", "avg_pool_3x3")}


def test_count_tracker_prunes_above_the_cap():
    ir = build(Spec(1, (Node((Edge(0, OPS), Edge(0, OPS)), keep=2),)))
    st_ = structure(ir)
    steps = build_dag(ir, st_, st_.members("c0"), ("stem",))
    sweep = Sweep(ir, st_, steps, (), (CountTracker("skip_connect", 0),), Counting())
    assert sum(sweep.forward().values()) == 3 * 3


def test_reading_a_node_no_step_made_is_a_bug():
    ir = build(Spec(1, (Node((Edge(0, OPS),)),)))
    st_ = structure(ir)
    steps = build_dag(ir, st_, st_.members("c0"), ())  # the cell's input is missing
    with pytest.raises(ValueError, match="no earlier step"):
        Sweep(ir, st_, steps, (PathTracker(frozenset(["stem"]), 1, "c0.out"),), (), Counting())


def test_inf_is_distinct_from_the_cap():
    """A cell whose output is cut off entirely satisfies a path rule vacuously."""
    ir = build(Spec(1, (Node((Edge(0, ("none",)),)),), rules=(PathRule("c", 2),)))
    assert count_satisfying(ir, ir.rules) == 1
    assert INF > 1 << 20


def test_state_explosion_is_a_constraint_error(monkeypatch):
    from dasc.compiler import dp
    from dasc.errors import ConstraintError

    monkeypatch.setattr(dp, "MAX_STATES", 3)
    ir = build(Spec(1, (Node((Edge(0, OPS),) * 3),), n_cells=3, shared=False,
                    rules=(CountRule(None, "skip_connect", 9, None),)))
    with pytest.raises(ConstraintError, match="too intricate"):
        count_satisfying(ir, ir.rules)


def test_finished_trackers_do_not_multiply_states():
    """40 independent cells, each with its own `in c` rules: once a cell is done its trackers
    are reset, so the states stay as few as for one cell (and the count is the 40th power)."""
    from dasc.compiler.count import make_plan, solve

    cell = (Node((Edge(0, OPS), Edge(0, OPS)), keep=1), Node((Edge(1, OPS),)))
    rules = (CountRule("c", "skip_connect", 1), PathRule("c", 1))
    one = count_satisfying(build(Spec(1, cell, rules=rules)), rules)
    ir = build(Spec(1, cell, n_cells=40, shared=False, rules=rules))
    solved = solve(make_plan(ir, rules), Counting(), keep_layers=True)
    assert sum(solved.final.values()) == one ** 40
    assert max(len(layer) for layer in solved.layers) <= 16
