"""Discretization: exact under rules (against brute force), DARTS's rule without them.

Oracles: brute force over `enumerate_archs` for the constrained optimum, and a transcription
of the DARTS reference code's `genotype()` parse (quark0/darts, model_search.py) for the
unconstrained rule on the shipped DARTS space.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dasc.compiler.arch import canonical, enumerate_archs, structure
from dasc.compiler.constraints import violations
from dasc.compiler.count import count_satisfying
from dasc.compiler.discretize import arch_score, darts_rule, discretize, gate_weights
from dasc.compiler.ir import CountRule, PathRule
from dasc.errors import ConstraintError, UsageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_dp import OPS, Edge, Node, Spec, build, specs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEVELS = [0.0, 0.05, 0.1, 0.2, 0.2, 0.5, 0.7, 1.0]  # repeats and zeros: ties and -inf


def same_score(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def draw_weights(data, ir, floats: bool):
    value = st.floats(0.001, 1.0) if floats else st.sampled_from(LEVELS)
    out = {}
    for _, p in ir.choices():
        if p.alpha not in out:
            out[p.alpha] = data.draw(st.lists(value, min_size=len(p.candidates),
                                              max_size=len(p.candidates)))
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(min_rules=1), st.data(), st.booleans())
def test_constrained_optimum_equals_brute_force(spec, data, floats):
    ir = build(spec)
    assume(count_satisfying(ir, ()) <= 2000)
    w = draw_weights(data, ir, floats)
    weights = gate_weights(ir, w)
    st_ = structure(ir)
    feasible = [a for a in enumerate_archs(ir) if not violations(ir, a, st=st_)]
    if not feasible:
        with pytest.raises(ConstraintError):
            discretize(ir, w, exact=True)
        return
    best = max(arch_score(ir, weights, a) for a in feasible)
    for exact in (True, False):
        arch = discretize(ir, w, exact=exact)
        assert violations(ir, arch, st=st_) == []
        assert canonical(ir, arch) == arch
        assert same_score(arch_score(ir, weights, arch), best)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs(), st.data(), st.booleans())
def test_without_rules_the_dp_agrees_with_darts(spec, data, floats):
    """The DP alone (exact=True) finds DARTS's architecture: the same one when weights have
    no ties, one of equal score otherwise."""
    ir = build(spec)
    w = draw_weights(data, ir, floats)
    weights = gate_weights(ir, w)
    darts = darts_rule(ir, weights)
    assume(darts is not None)  # a kept edge that offers only `none`: nothing to compare
    assert discretize(ir, w, rules=()) == darts
    dp = discretize(ir, w, rules=(), exact=True)
    assert same_score(arch_score(ir, weights, dp), arch_score(ir, weights, darts))
    distinct = all(len(set(v)) == len(v) for v in w.values()) and len(
        {x for v in w.values() for x in v}) == sum(len(v) for v in w.values())
    if floats and distinct:
        assert dp == darts


def reference_parse(W: list[list[float]]) -> list[tuple[str, int]]:
    """The DARTS reference code's `_parse` (model_search.py), transcribed."""
    primitives = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                  "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
    gene, n, start = [], 2, 0
    none = primitives.index("none")
    for i in range(4):
        end = start + n
        rows = W[start:end]
        edges = sorted(range(i + 2), key=lambda x: -max(
            rows[x][k] for k in range(len(rows[x])) if k != none))[:2]
        for j in edges:
            k_best = None
            for k in range(len(rows[j])):
                if k != none and (k_best is None or rows[j][k] > rows[j][k_best]):
                    k_best = k
            gene.append((primitives[k_best], j))
        start, n = end, n + 1
    return gene


@pytest.mark.parametrize("seed", [0, 1, 2, "uniform"])
def test_darts_space_matches_the_reference_parse(seed):
    from dasc.compiler.pipeline import compile_space

    ir = compile_space(str(ROOT / "spaces" / "darts.das"))
    rng = random.Random(seed)
    w = {}
    for _, p in ir.choices():
        logits = [0.0 if seed == "uniform" else rng.gauss(0, 1) for _ in p.candidates]
        z = sum(math.exp(x) for x in logits)
        w[p.alpha] = [math.exp(x) / z for x in logits]
    arch = discretize(ir, w)
    for kind in ("darts[stride=1]", "darts[stride=2]"):
        W = [w[f"{kind}.n{i + 2}.e{j}"] for i in range(4) for j in range(i + 2)]
        gene = reference_parse(W)
        ours = {(arch.op(f"{kind}.n{i + 2}.e{j}"), j)
                for i in range(4) for j in dict(arch.keeps)[f"{kind}.n{i + 2}"]}
        assert ours == set(gene)
    if seed == "uniform":  # α at initialization: the first two edges, the first op
        assert set(arch.choices) == {(k, "max_pool_3x3") for k, _ in arch.choices}


def test_rules_bind_only_when_darts_violates_them():
    """Skip-connect cap (P-DARTS): the edge that costs least log-likelihood is changed."""
    cell = (Node((Edge(0, OPS), Edge(0, OPS), Edge(0, OPS)), keep=2),)
    ir = build(Spec(1, cell, rules=(CountRule("c", "skip_connect", 1),)))
    w = {"c[].n0.e0": [0.0, 0.9, 0.05, 0.05, 0.0], "c[].n0.e1": [0.0, 0.8, 0.15, 0.05, 0.0],
         "c[].n0.e2": [0.0, 0.1, 0.7, 0.2, 0.0]}
    arch = discretize(ir, w)
    assert dict(arch.keeps) == {"c[].n0": (0, 2)}
    assert dict(arch.choices) == {"c[].n0.e0": "skip_connect", "c[].n0.e2": "max_pool_3x3"}
    unconstrained = discretize(ir, w, rules=())
    assert dict(unconstrained.keeps) == {"c[].n0": (0, 1)}


def test_sigmoid_threshold_picks_none_when_no_gate_is_on():
    ir = build(Spec(1, (Node((Edge(0, ("none", "skip_connect", "sep_conv_3x3")),)),)))
    off = discretize(ir, {"c[].n0.e0": [0.0, 0.3, 0.45]}, mode="sigmoid")
    on = discretize(ir, {"c[].n0.e0": [0.9, 0.3, 0.55]}, mode="sigmoid")
    assert off.op("c[].n0.e0") == "none" and on.op("c[].n0.e0") == "sep_conv_3x3"
    assert discretize(ir, {"c[].n0.e0": [0.0, 0.3, 0.45]}).op("c[].n0.e0") == "sep_conv_3x3"


def test_bad_weights_are_usage_errors():
    ir = build(Spec(1, (Node((Edge(0, OPS),)),)))
    for w, msg in [({}, "no weights for"), ({"c[].n0.e0": [1.0] * 5, "x": [1.0]}, "unknown"),
                   ({"c[].n0.e0": [1.0] * 4}, "5 candidates"),
                   ({"c[].n0.e0": [1.0, -1.0, 0, 0, 0]}, "finite and >= 0")]:
        with pytest.raises(UsageError, match=msg):
            discretize(ir, w)
    with pytest.raises(UsageError, match="mode"):
        discretize(ir, {"c[].n0.e0": [1.0] * 5}, mode="argmax")


def test_unsatisfiable_rules_raise():
    ir = build(Spec(1, (Node((Edge(0, ("skip_connect",)),)),),
                    rules=(PathRule("c", 1),)))
    with pytest.raises(ConstraintError):
        discretize(ir, {"c[].n0.e0": [1.0]})
