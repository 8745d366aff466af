"""The hardware-aware objective: expected cost, its gradient, both forms, and hard budgets.

Oracles: hand arithmetic on the tiny space of test_lower (stem conv, two 5-way choices, sum,
gap, linear), brute force over every architecture of small random spaces (test_dp's `specs`)
for the budgeted discretization, and a λ sweep of real searches on the tiny space.

What is guaranteed, and tested as such: the budget is never exceeded (for the cost the DP
charges, and therefore for the derived network's cost, which is never larger); within the
budget the answer is the best-scoring architecture; and the charge equals the derived cost
exactly on the spaces the orphan analysis passes. Monotonicity in λ is an empirical property
of the optimisation, not a theorem (the weights co-adapt with α); the sweep test holds it on
the tiny space at a fixed seed, where it does hold.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dasc.compiler.arch import enumerate_archs, random_arch, structure
from dasc.compiler.budget import charged, derived_ticks, make_budget, model_ticks
from dasc.compiler.constraints import violations
from dasc.compiler.cost import arch_cost
from dasc.compiler.count import count_satisfying
from dasc.compiler.discretize import arch_score, discretize, gate_weights
from dasc.compiler.pipeline import compile_space
from dasc.errors import ConstraintError, UsageError
from dasc.runtime.config import SearchConfig, resolve_config
from dasc.runtime.finish import finish
from dasc.runtime.lower import alpha_tensor, lower
from dasc.runtime.regularizers import ArchPenalty, Penalty, cost_model
from dasc.runtime.rundir import prepare_run_dir
from dasc.runtime.search import Searcher

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_dp import Edge, Node, Spec, build, specs  # noqa: E402
from tests.test_lower import tiny_ir  # noqa: E402
from tests.test_search_loop import synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Hand arithmetic for tiny_ir (C=4, 8x8): sep_conv_3x3 is two (depthwise 3x3 + pointwise
# 1x1 + BN) stacks; the stem a 1->4 3x3 conv; the head a 4->3 linear with bias.
SEP_MACS = 2 * (4 * 9 * 64 + 4 * 4 * 64)        # 6656
SEP_PARAMS = 2 * (4 * 9 + 4 * 4 + 2 * 4)        # 120
FIXED_MACS = 4 * 9 * 64 + 4 * 3                 # stem 2304 + linear 12
SEP = 2  # index of sep_conv_3x3 in test_lower.OPS


def _set_alphas(gm, values: dict[str, list[float]]) -> None:
    with torch.no_grad():
        for key, v in values.items():
            alpha_tensor(gm, key).copy_(torch.tensor(v))


ALPHAS = {"network.a": [0.3, -0.2, 0.5, 0.1, -0.4], "network.b": [-0.1, 0.2, 0.0, 0.7, 0.4]}


def test_cost_model_matches_hand_arithmetic():
    ir = tiny_ir()
    m = cost_model(ir, model_ticks("macs"))
    assert m.fixed == FIXED_MACS / 1e6
    assert m.table["network.a"] == [0, 0, SEP_MACS / 1e6, 0, 0]
    p = cost_model(ir, model_ticks("params"))
    assert p.table["network.b"][SEP] == SEP_PARAMS / 1e6


def test_expected_cost_and_gradient_equal_hand_values():
    ir = tiny_ir()
    gm = lower(ir)
    _set_alphas(gm, ALPHAS)
    pen = ArchPenalty(gm, ir, Penalty(cost=2.0), "macs")
    wa = torch.softmax(torch.tensor(ALPHAS["network.a"]), 0)
    wb = torch.softmax(torch.tensor(ALPHAS["network.b"]), 0)
    c = SEP_MACS / 1e6
    expected = FIXED_MACS / 1e6 + c * (wa[SEP] + wb[SEP])
    assert float(pen.expected_cost().detach()) == pytest.approx(float(expected), rel=1e-6)
    # additive: d(λ E)/dα_j = λ c w_sep (δ_j,sep - w_j) for a softmax gate
    alpha = alpha_tensor(gm, "network.a")
    (grad,) = torch.autograd.grad(pen(), [alpha])
    hand = 2.0 * c * wa[SEP] * ((torch.arange(5) == SEP).float() - wa)
    torch.testing.assert_close(grad, hand, rtol=1e-5, atol=1e-9)


def test_multiplicative_form_gradient_equals_hand_value():
    ir = tiny_ir()
    gm = lower(ir)
    _set_alphas(gm, ALPHAS)
    target, beta = 0.01, 0.6
    pen = ArchPenalty(gm, ir, Penalty(form="multiplicative", target=target, beta=beta), "macs")
    loss = torch.tensor(1.7)
    alpha = alpha_tensor(gm, "network.b")
    objective = pen.objective(loss)
    e = float(pen.expected_cost().detach())
    assert float(objective.detach()) == pytest.approx(1.7 * (e / target) ** beta, rel=1e-6)
    (grad,) = torch.autograd.grad(objective, [alpha])
    wb = torch.softmax(torch.tensor(ALPHAS["network.b"]), 0)
    d_e = (SEP_MACS / 1e6) * wb[SEP] * ((torch.arange(5) == SEP).float() - wb)
    hand = 1.7 * beta * (e / target) ** (beta - 1) / target * d_e
    torch.testing.assert_close(grad, hand, rtol=1e-5, atol=1e-9)
    assert float(pen()) == 0.0  # no additive part in this form


def test_keep_edges_count_with_the_share_a_derived_cell_keeps():
    spec = Spec(1, (Node((Edge(0, ("sep_conv_3x3", "skip_connect")),
                          Edge(0, ("sep_conv_3x3", "max_pool_3x3"))), keep=1),))
    ir = build(spec)
    m = cost_model(ir, model_ticks("macs"))
    full = arch_cost(ir, next(a for a in enumerate_archs(ir)
                              if "sep_conv_3x3" in dict(a.choices).values())).macs
    assert m.table["c[].n0.e0"][0] == pytest.approx(0.5 * full / 1e6)


def test_settings_are_checked_together():
    with pytest.raises(UsageError, match="cost_target"):
        resolve_config((), {"cost_form": "multiplicative"})
    with pytest.raises(UsageError, match="latency table"):
        resolve_config((), {"cost_kind": "latency", "budget": 2.0})
    with pytest.raises(UsageError, match="must not be negative"):
        resolve_config((), {"budget": -1})
    cfg = resolve_config((), {"cost_form": "multiplicative", "cost_target": 0.5})
    assert (cfg.cost_form, cfg.cost_target, cfg.cost_beta) == ("multiplicative", 0.5, 0.6)


# ----------------------------------------------------------------------------- budgets

OP_NAMES = ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "relu",
            "adapter")


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs(), st.data())
def test_budget_is_exact_against_brute_force(spec, data):
    """Random spaces and per-op costs (fixed relus too, so orphaned ops occur): never over
    budget, best score within it, charge == derived cost where `exact`, >= elsewhere."""
    ir = build(spec)
    assume(0 < count_satisfying(ir, ()) <= 1500)
    cost = {o: data.draw(st.integers(0, 40)) for o in OP_NAMES}
    cost["none"] = 0
    ticks = lambda call, shapes: cost[call.op]  # noqa: E731
    st_ = structure(ir)
    archs = list(enumerate_archs(ir))
    probe = make_budget(ir, "macs", 1e9, ticks)
    charges = [charged(ir, a, probe, st_) for a in archs]
    for a, c in zip(archs, charges):
        true = derived_ticks(ir, a, ticks, st_)
        assert c == true if probe.exact else c >= true
    limit = data.draw(st.integers(min(charges) - 3, max(charges) + 3))
    rule = make_budget(ir, "macs", limit / 1e6, ticks)
    assert rule.limit == limit
    w = {}
    for _, p in ir.choices():
        w.setdefault(p.alpha, [data.draw(st.floats(0.01, 1.0)) for _ in p.candidates])
    weights = gate_weights(ir, w)
    feasible = [a for a, c in zip(archs, charges) if c <= limit and not violations(ir, a, st=st_)]
    for exact in (True, False):
        if not feasible:
            with pytest.raises(ConstraintError):
                discretize(ir, w, exact=exact, budget=rule)
            continue
        arch = discretize(ir, w, exact=exact, budget=rule)
        assert charged(ir, arch, rule, st_) <= limit
        assert derived_ticks(ir, arch, ticks, st_) <= limit
        assert not violations(ir, arch, st=st_)
        best = max(arch_score(ir, weights, a) for a in feasible)
        assert math.isclose(arch_score(ir, weights, arch), best, rel_tol=1e-9, abs_tol=1e-12)


@pytest.mark.parametrize("space,kind", [("digits", "macs"), ("digits", "params"),
                                        ("mobile", "macs")])
def test_shipped_spaces_budget_is_exact_and_monotone(space, kind):
    """On the shipped DARTS-style spaces charges equal `arch_cost`; over a sweep of budgets
    the best score never rises as the budget shrinks and no answer exceeds its budget."""
    ir = compile_space(str(ROOT / "spaces" / f"{space}.das"))
    rule = make_budget(ir, kind, 1e9)
    assert rule.exact and not rule.orphans
    rng = random.Random(0)
    for _ in range(10):
        a = random_arch(ir, rng)
        assert charged(ir, a, rule) == getattr(arch_cost(ir, a), kind)
    w = {p.alpha: [rng.random() for _ in p.candidates] for _, p in ir.choices()}
    weights = gate_weights(ir, w)
    free = discretize(ir, w)
    top = charged(ir, free, rule)
    last = math.inf
    for frac in (1.0, 0.9, 0.75, 0.6, 0.5):
        budget = (rule.fixed + frac * (top - rule.fixed)) / 1e6
        try:
            arch = discretize(ir, w, budget=make_budget(ir, kind, budget))
        except ConstraintError as err:
            assert "cheapest" in str(err)
            break
        assert getattr(arch_cost(ir, arch), kind) <= math.floor(budget * 1e6 + 1e-6)
        score = arch_score(ir, weights, arch)
        assert score <= last + 1e-9
        last = score


def test_unmeetable_budget_names_the_cheapest_cost():
    ir = compile_space(str(ROOT / "spaces" / "digits.das"))
    with pytest.raises(ConstraintError, match="cheapest .* costs") as info:
        discretize(ir, {p.alpha: [1.0] * len(p.candidates) for _, p in ir.choices()},
                   budget=make_budget(ir, "macs", 0.01))
    assert "raise the budget" in info.value.hint


# ----------------------------------------------------------------------------- searches

def _search(tmp_path: Path, name: str, **overrides) -> Searcher:
    cfg = SearchConfig(epochs=3, batch_size=12, arch_lr=3e-2, seed=0, **overrides)
    run = tmp_path / name
    prepare_run_dir(run, force=False, resume=False)
    searcher = Searcher(tiny_ir(), synthetic(), cfg, run)
    searcher.run()
    return searcher


@pytest.mark.parametrize("overrides", [
    {"cost": 1.0},
    {"cost_form": "multiplicative", "cost_target": 0.005},
    {"budget": 0.01},
])
def test_expected_cost_is_recorded_in_every_form(tmp_path, overrides):
    s = _search(tmp_path, "run", **overrides)
    costs = [m["expected_cost"] for m in s.state.metrics]
    assert all(c is not None and c > FIXED_MACS / 1e6 for c in costs)
    assert {m["cost_unit"] for m in s.state.metrics} == {"M MACs"}


def test_search_under_a_budget_derives_within_it(tmp_path):
    s = _search(tmp_path, "run", budget=(FIXED_MACS + SEP_MACS + 100) / 1e6)
    outcome = finish(s)
    assert arch_cost(s.ir, outcome.arch).macs <= FIXED_MACS + SEP_MACS + 100
    assert sum(op == "sep_conv_3x3" for _, op in outcome.arch.choices) <= 1


def test_larger_lambda_never_derives_a_costlier_network_on_the_tiny_space(tmp_path):
    """A λ sweep at a fixed seed: derived MACs never rise with λ (empirical, see the doc)."""
    macs = []
    for lam in (0.0, 3.0, 30.0, 300.0):
        s = _search(tmp_path, f"lam{lam}", cost=lam)
        mode = "darts"
        arch = discretize(s.ir, {k: torch.softmax(alpha_tensor(s.model, k).detach(), 0)
                                 .tolist() for k in s.model.dasc.alphas}, mode=mode)
        macs.append(arch_cost(s.ir, arch).macs)
    assert macs == sorted(macs, reverse=True)
    assert macs[-1] < macs[0]
