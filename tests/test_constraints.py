"""Constraint checks: unsatisfiable rules are named with a path; `violations` is exact.

Why: an unsatisfiable space must fail at compile time with the rule's line and a concrete
path (DESIGN.md), and `violations` is the oracle the DP is tested against, so it is itself
checked here on cases worked out by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dasc.compiler.arch import Arch
from dasc.compiler.constraints import check_satisfiable, describe, violations
from dasc.compiler.ir import CountRule, PathRule
from dasc.errors import ConstraintError, Span

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_dp import DARTS_CELL, Edge, Node, Spec, build  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPAN = Span("space.das", 7, 1, 7, 31)
SKIP_OR_CONV = ("skip_connect", "sep_conv_3x3")


def unsat(spec: Spec) -> ConstraintError:
    with pytest.raises(ConstraintError) as info:
        check_satisfiable(build(spec))
    return info.value


def test_cell_path_rule_names_rule_and_path():
    err = unsat(Spec(2, DARTS_CELL, rules=(PathRule("c", 2, SPAN),)))
    assert err.span == SPAN
    assert "constraint paths in c >= 2" in err.message and "at most 1 non-skip op" in err.message
    assert err.notes == ("for example stem -> c0.n0.e0 [max_pool_3x3] -> c0.n0 -> c0.out",)
    assert "lower the bound to 1" in err.hint
    assert "space.das:7:1: error:" in err.render()


def test_network_path_rule_through_shared_cells():
    err = unsat(Spec(2, DARTS_CELL, n_cells=2, rules=(PathRule(None, 3, SPAN),)))
    assert "through the network has at most 1" in err.message
    assert err.notes[0].startswith("for example x -> ") and err.notes[0].endswith("-> out")


def test_count_rule_names_the_forced_choices():
    spec = Spec(1, (Node((Edge(0, ("skip_connect",)),)),), n_cells=2,
                rules=(CountRule(None, "skip_connect", 1, SPAN),))
    err = unsat(spec)
    assert "picks `skip_connect` at least 2 times" in err.message
    assert "c[].n0.e0 (c0.n0.e0)" in err.notes[0] and "(c1.n0.e0)" in err.notes[0]
    assert "raise the cap to 2" in err.hint


def test_rules_that_conflict_only_together():
    """Each rule alone can be met; together they cannot: both are listed."""
    cell = (Node((Edge(0, SKIP_OR_CONV), Edge(0, SKIP_OR_CONV)), keep=2),)
    rules = (PathRule("c", 1, SPAN), CountRule("c", "sep_conv_3x3", 1, SPAN))
    err = unsat(Spec(1, cell, rules=rules))
    assert "together" in err.message
    assert [n.split(" (")[0] for n in err.notes] == [describe(r) for r in rules]


def test_satisfiable_rules_pass_and_none_cuts_paths():
    nb201ish = (Node((Edge(0, ("none", "sep_conv_3x3")),)),)
    check_satisfiable(build(Spec(1, nb201ish, rules=(PathRule("c", 1, SPAN),))))
    check_satisfiable(build(Spec(1, nb201ish, rules=(PathRule(None, 5, SPAN),))))  # vacuous


def test_violations_by_hand():
    cell = (Node((Edge(0, SKIP_OR_CONV), Edge(0, SKIP_OR_CONV)), keep=1),)
    rules = (PathRule("c", 1), CountRule(None, "skip_connect", 1))
    ir = build(Spec(1, cell, n_cells=2, rules=rules))
    ok = Arch((("c[].n0.e1", "sep_conv_3x3"),), (("c[].n0", (1,)),))
    assert violations(ir, ok) == []
    bad = Arch((("c[].n0.e0", "skip_connect"), ("c[].n0.e1", "sep_conv_3x3")),
               (("c[].n0", (0,)),))
    out = violations(ir, bad)
    assert len(out) == 2
    assert out[0].startswith("constraint paths in c >= 1: c[]: path stem -> c0.n0.e0 "
                             "[skip_connect] -> c0.n0 -> c0.out has 0 non-skip ops")
    assert out[1].startswith("constraint count skip_connect <= 1: network: 2 choices pick")


def test_digits_space_rule_tightened():
    """The shipped digits space, its path rule raised beyond what its cells allow (node n2
    sits on a path of its own: input, one edge, output)."""
    from dasc.compiler.pipeline import compile_space

    ir = compile_space(str(ROOT / "spaces" / "digits.das"), constraints=False)
    check_satisfiable(ir)
    ir.rules = (PathRule("digit", 3, SPAN),)
    with pytest.raises(ConstraintError, match="at most 1 non-skip op$") as info:
        check_satisfiable(ir)
    assert " -> digit0.n2 -> digit0.out" in info.value.notes[0]
