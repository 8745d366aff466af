"""The fx super-network against a direct weighted sum of its candidates, for every gate."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

from dasc.compiler.ir import (IR, BlockNode, Candidate, ChoiceNode, CombineNode, InputNode,
                              OpCall, OpNode, OutputNode)
from dasc.ops.registry import Shape
from dasc.runtime.gates import Gate, Schedule
from dasc.runtime.lower import (LoweringOptions, alpha_tensor, arch_parameters, lower,
                                weight_parameters)

OPS = ("max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "skip_connect", "none")


def _cand(op: str, shape: Shape) -> Candidate:
    return Candidate(op, (BlockNode(OpCall(op, (("stride", 1),)), (-1,), shape),),
                     skip=op == "skip_connect", zero=op == "none")


def tiny_ir(ops=OPS, shared: bool = False) -> IR:
    """input -> conv -> two choices (optionally sharing α) -> sum -> gap -> linear."""
    s = Shape(4, 8, 8)
    ir = IR("tiny", nx.DiGraph(), (("C", 4),))
    ir.add("image", InputNode("image", shape=Shape(1, 8, 8)))
    ir.add("stem", OpNode(OpCall("conv", (("c", 4), ("k", 3))), ("image",), shape=s))
    cands = tuple(_cand(op, s) for op in ops)
    ir.add("a", ChoiceNode(cands, ("stem",), "network.a", "network", shape=s))
    ir.add("b", ChoiceNode(cands, ("a",), "network.a" if shared else "network.b", "network",
                           shape=s))
    ir.add("s", CombineNode("sum", ("a", "b"), shape=s))
    ir.add("gap", OpNode(OpCall("gap"), ("s",), shape=Shape(4, 1, 1)))
    ir.add("fc", OpNode(OpCall("linear", (("n", 3),)), ("gap",), shape=Shape(3, 1, 1)))
    ir.add("out", OutputNode(("fc",), shape=Shape(3, 1, 1)))
    return ir


def _reference(gm, x: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i op_i(x) written out by hand from the super-network's own modules."""
    def mix(name: str, key: str, inp: torch.Tensor) -> torch.Tensor:
        w = gm.gate(alpha_tensor(gm, key))
        mixed = getattr(gm, name)
        out = torch.zeros_like(inp)
        for i, op in enumerate(mixed.candidates.values()):
            if not mixed.zero[i]:
                out = out + w[i] * op(inp)
        return out

    h = gm.stem(x)
    key_b = gm.dasc.alphas.get("network.b") and "network.b" or "network.a"
    a = mix("a", "network.a", h)
    b = mix("b", key_b, a)
    return torch.flatten(gm.fc(gm.gap(a + b)), 1)


@pytest.mark.parametrize("gate", ["softmax", "sigmoid", "gumbel", "gumbel_hard"])
def test_supernet_equals_weighted_sum(gate):
    torch.manual_seed(0)
    gm = lower(tiny_ir(), LoweringOptions(gate=gate, tau=0.7, alpha_init_std=1.0))
    gm.eval()  # deterministic gates and BN statistics
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(gm(x), _reference(gm, x))


def test_binary_sigmoid_uses_one_alpha_like_the_seed():
    gm = lower(tiny_ir(ops=("max_pool_3x3", "avg_pool_3x3")), LoweringOptions(gate="sigmoid"))
    alpha = alpha_tensor(gm, "network.a")
    assert alpha.numel() == 1
    w = gm.gate(alpha)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    torch.testing.assert_close(w[0], torch.sigmoid(alpha)[0])


def test_shared_alpha_is_one_parameter():
    gm = lower(tiny_ir(shared=True))
    assert len(arch_parameters(gm)) == 1
    assert gm.dasc.alphas["network.a"].instances == 2
    assert not {id(p) for p in arch_parameters(gm)} & {id(p) for p in weight_parameters(gm)}


def test_alpha_gradient_matches_finite_differences():
    torch.manual_seed(1)
    gm = lower(tiny_ir(), LoweringOptions(alpha_init_std=0.5)).double()
    gm.eval()
    x = torch.randn(3, 1, 8, 8, dtype=torch.double)
    y = torch.tensor([0, 1, 2])
    alpha = alpha_tensor(gm, "network.b")
    loss = F.cross_entropy(gm(x), y)
    (grad,) = torch.autograd.grad(loss, [alpha])
    eps = 1e-6
    for i in range(alpha.numel()):
        with torch.no_grad():
            alpha[i] += eps
            up = F.cross_entropy(gm(x), y)
            alpha[i] -= 2 * eps
            down = F.cross_entropy(gm(x), y)
            alpha[i] += eps
        assert float(grad[i]) == pytest.approx(float((up - down) / (2 * eps)), abs=1e-6)


def test_generated_code_names_nodes_after_the_source():
    code = lower(tiny_ir()).code
    assert "self.stem(image)" in code
    assert "w_network_a = self.gate(alphas_network_a, key = 'network.a')" in code
    assert "a = self.a(stem, w_network_a, " in code
    assert "relu_stem = torch.relu(stem)" in code  # one ReLU shared by the conv candidates


@pytest.mark.parametrize("options", [
    LoweringOptions(share=False), LoweringOptions(channels_last=True),
    LoweringOptions(checkpoint=True), LoweringOptions(recompute_pointwise=True)])
def test_lowering_optimisations_do_not_change_the_function(options):
    torch.manual_seed(0)
    plain = lower(tiny_ir(), LoweringOptions(share=False, alpha_init_std=1.0))
    torch.manual_seed(0)
    other = lower(tiny_ir(), LoweringOptions(**{**options.__dict__, "alpha_init_std": 1.0}))
    other.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 0])
    grads = []
    for gm in (plain, other):
        gm.train()
        loss = F.cross_entropy(gm(x), y)
        grads.append(torch.autograd.grad(loss, arch_parameters(gm) + weight_parameters(gm)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for name, buf in plain.named_buffers():  # BN statistics updated exactly once
        torch.testing.assert_close(buf, dict(other.named_buffers())[name])


def test_hard_gumbel_runs_only_the_selected_candidate():
    torch.manual_seed(0)
    gm = lower(tiny_ir(), LoweringOptions(gate="gumbel_hard"))
    calls = []
    for op in gm.a.candidates.values():
        op.register_forward_hook(lambda *a: calls.append(1))
    gm.train()
    gm(torch.randn(2, 1, 8, 8)).sum().backward()
    assert len(calls) <= 1
    assert alpha_tensor(gm, "network.a").grad is not None


def test_partial_channels_keeps_shapes():
    torch.manual_seed(0)
    gm = lower(tiny_ir(), LoweringOptions(partial_channels=2))
    assert gm.a.partial == 2
    assert gm(torch.randn(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("kind", ["constant", "linear", "exponential", "cosine"])
def test_schedules_start_and_end_where_told(kind):
    sched = Schedule(kind, 5.0, 0.5)
    assert sched.at(0.0) == pytest.approx(5.0)
    assert sched.at(1.0) == pytest.approx(0.5 if kind != "constant" else 5.0)
    values = [sched.at(p / 10) for p in range(11)]
    assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))


def test_gate_rejects_unknown_kind():
    with pytest.raises(ValueError):
        Gate("argmax")


def test_channels_last_is_skipped_for_very_narrow_networks():
    """Regression: channels-last 1x1 convs with one output channel crash PyTorch's CPU kernels
    (found by bench/supernet_step.py at C=2); such networks keep the default layout."""
    from dasc.compiler.pipeline import compile_space
    from dasc.errors import Sources
    from conftest import ROOT

    ir = compile_space(str(ROOT / "spaces" / "darts.das"), {"C": 2, "layers": 3}, Sources())
    gm = lower(ir, LoweringOptions(channels_last=True))
    assert "channels_last" not in gm.code
    gm(torch.randn(2, 3, 32, 32)).sum().backward()
