"""Architectures: JSON round trip, fitting checks, brute-force enumeration, uniform sampling."""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dasc.compiler.arch import (
    Arch, canonical, check_arch_fits, enumerate_archs, random_arch, read_arch, structure,
    write_arch,
)
from dasc.compiler.constraints import violations
from dasc.compiler.count import count_architectures, count_satisfying
from dasc.compiler.ir import CountRule, PathRule
from dasc.errors import ConstraintError, UsageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_dp import OPS, Edge, Node, Spec, build, specs  # noqa: E402

keys = st.text("abcn[]=.0123", min_size=1, max_size=12)
archs = st.builds(Arch, st.lists(st.tuples(keys, st.sampled_from(OPS)), unique_by=lambda t: t[0]
                                 ).map(tuple),
                  st.lists(st.tuples(keys, st.lists(st.integers(0, 9), unique=True).map(tuple)),
                           unique_by=lambda t: t[0]).map(tuple))


@given(archs)
def test_json_round_trip(arch):
    doc = arch.to_json("space")
    assert doc["format"] == "dasc-arch" and doc["version"] == 1 and doc["space"] == "space"
    assert Arch.from_json(json.loads(json.dumps(doc))) == arch
    assert Arch.from_json(json.dumps(doc)) == arch


def test_arch_is_order_independent():
    a = Arch((("b", "x"), ("a", "y")), (("k", (2, 0)),))
    assert a == Arch((("a", "y"), ("b", "x")), (("k", (0, 2)),))
    assert a.op("a") == "y" and a.op("zz") is None


@pytest.mark.parametrize("doc, msg", [
    ("[]", "not an arch.json"), ('{"format": "dasc-arch", "version": 2}', "version 2"),
    ('{"format": "dasc-arch", "version": 1, "choices": {"a": 3}}', "must map"),
    ('{"format": "dasc-arch", "version": 1, "keeps": {"a": [true]}}', "must map"),
    ("{oops", "not valid JSON"),
])
def test_malformed_json(doc, msg):
    with pytest.raises(UsageError, match=msg):
        Arch.from_json(doc)


CELL = (Node((Edge(0, OPS), Edge(0, OPS), Edge(0, None)), keep=2),
        Node((Edge(1, OPS),)))


def test_check_arch_fits_lists_missing_and_unknown():
    ir = build(Spec(1, CELL))
    good = Arch((("c[].n0.e0", "skip_connect"), ("c[].n1.e0", "none")), (("c[].n0", (0, 2)),))
    check_arch_fits(ir, good)
    check_arch_fits(ir, Arch(good.choices + (("c[].n0.e1", "sep_conv_3x3"),), good.keeps))
    cases = [
        (Arch(good.choices), "no inputs kept for 'c\\[\\].n0'"),
        (Arch(good.choices[:1], good.keeps), "no op chosen for 'c\\[\\].n1.e0'"),
        (Arch(good.choices + (("zz", "none"),), good.keeps), "unknown choice 'zz'"),
        (Arch(good.choices, good.keeps + (("kk", (0,)),)), "unknown input selection"),
        (Arch((("c[].n0.e0", "none"),) + good.choices[1:], good.keeps), "not one of"),
        (Arch(good.choices, (("c[].n0", (0, 5)),)), "2 distinct inputs out of positions 0..2"),
    ]
    for arch, msg in cases:
        with pytest.raises(UsageError, match=msg) as info:
            check_arch_fits(ir, arch)
        assert "space 'test'" in info.value.message and info.value.hint


def test_read_and_write(tmp_path):
    ir = build(Spec(1, CELL))
    arch = next(iter(enumerate_archs(ir)))
    path = tmp_path / "arch.json"
    write_arch(str(path), arch, ir.name)
    assert read_arch(str(path), ir) == arch
    assert read_arch(path.read_text(), ir) == arch
    with pytest.raises(UsageError, match="does not exist"):
        read_arch(str(tmp_path / "nope.json"))
    other = json.loads(path.read_text()) | {"space": "darts"}
    with pytest.raises(UsageError, match="for space 'darts', not 'test'"):
        read_arch(json.dumps(other), ir)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_enumeration_is_canonical_and_fits(spec):
    ir = build(spec)
    assume(count_satisfying(ir, ()) <= 500)
    seen = list(enumerate_archs(ir))
    assert len(set(seen)) == len(seen) == count_architectures(ir).total
    for arch in seen[:50]:
        check_arch_fits(ir, arch)
        assert canonical(ir, arch) == arch


def test_random_arch_is_uniform_over_satisfying():
    """Edges offer different numbers of ops, so per-choice sampling would not be uniform."""
    cell = (Node((Edge(0, OPS), Edge(0, ("skip_connect", "sep_conv_3x3")), Edge(0, None)),
                 keep=1),)
    ir = build(Spec(1, cell, rules=(CountRule("c", "skip_connect", 0), PathRule(None, 1))))
    st_ = structure(ir)
    allowed = [a for a in enumerate_archs(ir) if not violations(ir, a, st=st_)]
    assert len(allowed) == 3 + 1  # e0: max/avg/sep; e1: sep; the fixed edge has no op
    rng = random.Random(0)
    draws = Counter(random_arch(ir, rng) for _ in range(2000))
    assert set(draws) == set(allowed)
    assert all(400 <= n <= 600 for n in draws.values()), draws
    unconstrained = Counter(random_arch(ir, rng, constrained=False) for _ in range(100))
    assert len(unconstrained) > len(allowed)


def test_random_arch_with_no_solution():
    ir = build(Spec(1, (Node((Edge(0, ("skip_connect",)),)),), rules=(PathRule("c", 1),)))
    with pytest.raises(ConstraintError):
        random_arch(ir, random.Random(0))
