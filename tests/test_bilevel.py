"""Second-order DARTS: the finite-difference hypergradient against the exact one."""

from __future__ import annotations

import torch

from dasc.runtime import bilevel
from dasc.runtime.lower import LoweringOptions, arch_parameters, lower, weight_parameters

from test_lower import tiny_ir


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    gm = lower(tiny_ir(), LoweringOptions(alpha_init_std=0.5)).double()
    gm.eval()  # BN with running statistics: the loss is a smooth function of w and α
    parts = bilevel.StepParts(gm, weight_parameters(gm), arch_parameters(gm),
                              lambda: torch.zeros((), dtype=torch.double))
    g = torch.Generator().manual_seed(seed)
    train = (torch.randn(8, 1, 8, 8, generator=g, dtype=torch.double), torch.randint(0, 3, (8,), generator=g))
    valid = (torch.randn(8, 1, 8, 8, generator=g, dtype=torch.double), torch.randint(0, 3, (8,), generator=g))
    return parts, train, valid


def test_finite_difference_hypergradient_matches_exact():
    """Tolerance: relative error below 1e-3 in float64 (the FD step is 0.01/||v||)."""
    parts, train, valid = _parts()
    xi = 0.05
    exact = bilevel.exact_hypergradient(parts, train, valid, xi)
    w_opt = torch.optim.SGD(parts.weights, lr=xi)  # fresh: no momentum buffers
    bilevel.second_order_alpha_grad(parts, train, valid, xi, 0.0, 0.0, w_opt)
    approx = [a.grad for a in parts.alphas]
    exact_flat = torch.cat([e.flatten() for e in exact])
    approx_flat = torch.cat([a.flatten() for a in approx])
    rel = float((exact_flat - approx_flat).norm() / exact_flat.norm())
    assert rel < 1e-3, rel


def test_second_order_differs_from_first_order():
    """The implicit term is not negligible here, so the test above is not vacuous."""
    parts, train, valid = _parts()
    first = bilevel.exact_hypergradient(parts, train, valid, xi=0.0)
    second = bilevel.exact_hypergradient(parts, train, valid, xi=0.05)
    diff = torch.cat([(a - b).flatten() for a, b in zip(first, second)]).norm()
    assert float(diff) > 1e-4


def test_second_order_step_restores_the_weights():
    parts, train, valid = _parts()
    before = [w.detach().clone() for w in parts.weights]
    w_opt = torch.optim.SGD(parts.weights, lr=0.1, momentum=0.9)
    bilevel.second_order_alpha_grad(parts, train, valid, 0.1, 0.9, 3e-4, w_opt)
    for b, w in zip(before, parts.weights):
        assert torch.equal(b, w)
