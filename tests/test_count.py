"""Counting: the DP's totals and satisfying counts equal brute-force enumeration.

The oracle is independent of the DP: `enumerate_archs` lists every keep subset and every op of
every decided choice, and `violations` checks each architecture directly on its derived graph.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings

from dasc.compiler.arch import enumerate_archs, structure
from dasc.compiler.constraints import violations
from dasc.compiler.count import Counts, count_architectures, count_satisfying

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_dp import DARTS_CELL, OPS, Edge, Node, Spec, build, specs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = 3000


def brute(ir) -> Counts:
    total = satisfying = 0
    st = structure(ir)
    for arch in enumerate_archs(ir):
        total += 1
        satisfying += not violations(ir, arch, st=st)
    return Counts(total, satisfying)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(min_rules=1))
def test_counts_equal_brute_force(spec):
    ir = build(spec)
    assume(count_satisfying(ir, ()) <= SMALL)
    assert count_architectures(ir) == brute(ir)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(max_cells=1))
def test_each_rule_alone_equals_brute_force(spec):
    ir = build(spec)
    assume(count_satisfying(ir, ()) <= SMALL)
    for rule in spec.rules:
        st = structure(ir)
        expected = sum(not violations(ir, a, (rule,), st=st) for a in enumerate_archs(ir))
        assert count_satisfying(ir, (rule,)) == expected


def test_network_rule_when_the_first_shared_cell_gets_one_tensor_twice():
    """Found by hypothesis in a fresh CI clone: the representative cell is called with
    (stem, stem), so it could not tell its unused input s0 from s1 and reported a path from s0;
    the count said 1 of 3 satisfy `paths >= 3`, brute force 2 (`none` cuts every path)."""
    from dasc.compiler.ir import PathRule

    spec = Spec(n_in=2, nodes=(Node((Edge(1, ("none", "skip_connect", "max_pool_3x3")),)),),
                n_cells=3, shared=True, rules=(PathRule(None, 3),))
    ir = build(spec)
    assert count_architectures(ir) == brute(ir) == Counts(3, 2)


def test_a_shared_cell_with_incompatible_repeated_arguments_is_refused():
    from dasc.compiler.count import _profile_instance
    from dasc.compiler.ir import Region
    from dasc.errors import ConstraintError

    a = Region("c0", "c", "c[]", ("x", "x", "z"), "a", True)
    b = Region("c1", "c", "c[]", ("p", "q", "q"), "b", False)
    with pytest.raises(ConstraintError, match="same tensor in different argument positions"):
        _profile_instance([a, b])
    distinct = Region("c2", "c", "c[]", ("p", "q", "r"), "d", False)
    assert _profile_instance([a, distinct]) is distinct


def test_network_rule_over_shared_cells():
    """A network-level cap counts every instance of a shared cell (3 instances here)."""
    from dasc.compiler.ir import CountRule, PathRule

    cell = (Node((Edge(0, ("skip_connect", "sep_conv_3x3")), Edge(0, OPS[1:3])), keep=1),)
    for rule in (CountRule(None, "skip_connect", 3), PathRule(None, 2),
                 CountRule(None, "skip_connect", 2)):
        ir = build(Spec(1, cell, n_cells=3, shared=True, net_ops=OPS[:2], rules=(rule,)))
        assert count_architectures(ir) == brute(ir)


def test_darts_cell_by_hand():
    ir = build(Spec(2, DARTS_CELL))
    assert count_architectures(ir) == Counts(3 * 6 * 10 * 4 ** 8, 3 * 6 * 10 * 4 ** 8)


@pytest.mark.parametrize("space, total, satisfying", [
    ("darts.das", (1 * 3 * 6 * 10 * 7 ** 8) ** 2, None),
    ("nb201.das", 5 ** 6, None),
    ("pooling.das", 2, None),
])
def test_shipped_spaces(space, total, satisfying):
    """The counts DESIGN.md and the papers give: DARTS (C=16, 8 layers) and NAS-Bench-201."""
    from dasc.compiler.pipeline import compile_space

    ir = compile_space(str(ROOT / "spaces" / space))
    counts = count_architectures(ir)
    assert counts.total == total
    assert counts.satisfying == (total if satisfying is None else satisfying)
    assert counts.total == 1_076_746_950_455_072_400 or space != "darts.das"


def test_summary_of_the_digits_space():
    """What `dasc compile` prints comes from the same counts (and rules and costs)."""
    from dasc.compiler.pipeline import compile_space
    from dasc.compiler.summary import summarize

    s = summarize(compile_space(str(ROOT / "spaces" / "digits.das")))
    data = s.to_json()
    assert data["architectures"] == 1875 ** 2 and data["satisfying_architectures"] == 896 ** 2
    assert data["adapters"] == [] and data["choice_points"] == 15 and data["alpha_keys"] == 10
    assert data["sharing_keys"] == [{"key": "digit[stride=1]", "instances": 2},
                                    {"key": "digit[stride=2]", "instances": 1}]
    assert data["constraints"][0]["rule"] == "constraint paths in digit >= 1"
    assert data["constraints"][0]["status"] == "ok"
    text = s.to_text()
    assert "architectures  3,515,625" in text and "satisfying     802,816" in text


def test_huge_counts_print_exactly():
    """Counts beyond CPython's 4300-digit str() limit still print, digit for digit."""
    from dasc.compiler.summary import _int

    n = 7 ** 6000
    assert _int(n).replace(",", "").split(" ")[0].endswith(f"{n % 10 ** 12:012d}")
    assert _int(1_076_746_950_455_072_400) == "1,076,746,950,455,072,400 (~1.077e+18)"
