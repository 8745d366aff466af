"""The cost model: trainable parameters and multiply-accumulates, per node, from the op registry.

Every number comes from the registry's cost rules (`OpSpec.params_count`, `OpSpec.macs`) applied
to the inferred input shapes, so the compiler, the hardware-aware penalty and `derive` agree
with each other and with the DARTS / NAS-Bench-201 conventions the rules follow (MACs of
convolutions and linear layers, for one input at the space's input shape).

* `supernet_cost`: every candidate of every choice (what the search trains).
* `arch_cost`: the derived network of one architecture, the nodes `prune` keeps. It is computed
  from the same derived view as `prune` but without building the pruned IR, and the tests
  hold it equal to `total_cost(prune(ir, arch))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from dasc.compiler.arch import structure
from dasc.compiler.ir import IR, Candidate, ChoiceNode, OpCall, OpNode
from dasc.compiler.prune import alive, derived_inputs
from dasc.ops import REGISTRY
from dasc.ops.registry import Registry, Shape, resolve_args


@dataclass(frozen=True)
class Cost:
    """Trainable parameters and multiply-accumulates (Python ints)."""

    params: int = 0
    macs: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs)


def op_cost(call: OpCall, in_shapes: Sequence[Shape], registry: Registry = REGISTRY) -> Cost:
    """One primitive op at these input shapes (`sum` and `concat` cost nothing)."""
    spec = registry.get(call.op)
    if spec is None:
        raise ValueError(f"cost: op {call.op!r} is not registered")
    args = resolve_args(spec, call.argdict())
    shapes = tuple(in_shapes)
    return Cost(int(spec.params_count(shapes, args)), int(spec.macs(shapes, args)))


def candidate_cost(cand: Candidate, in_shape: Shape, registry: Registry = REGISTRY) -> Cost:
    """A candidate's block of ops (adapters included), fed by a tensor of `in_shape`."""
    total = Cost()
    for b in cand.nodes:
        shapes = [in_shape if j < 0 else cand.nodes[j].shape for j in b.inputs]
        total += op_cost(b.call, shapes, registry)
    return total


def node_cost(ir: IR, node_id: str, registry: Registry = REGISTRY) -> Cost:
    """A fixed op's cost; a choice's is the sum over all its candidates (the supernet's)."""
    p = ir.node(node_id)
    if isinstance(p, OpNode):
        return op_cost(p.call, [ir.node(x).shape for x in p.inputs], registry)
    if isinstance(p, ChoiceNode):
        x = ir.node(p.inputs[0]).shape
        total = Cost()
        for cand in p.candidates:
            total += candidate_cost(cand, x, registry)
        return total
    return Cost()


def total_cost(ir: IR, registry: Registry = REGISTRY) -> Cost:
    """Every node of `ir`: for a derived network (no choices), its cost."""
    total = Cost()
    for n in ir.graph.nodes:
        total += node_cost(ir, n, registry)
    return total


def supernet_cost(ir: IR, registry: Registry = REGISTRY) -> Cost:
    """The super-network: all candidates of all choices, all fixed ops."""
    return total_cost(ir, registry)


def arch_cost(ir: IR, arch: Any, registry: Registry = REGISTRY) -> Cost:
    """The derived network of `arch`: chosen candidates on kept edges, live fixed ops."""
    st = structure(ir)
    chosen, kept = st.view(ir, arch)
    live = alive(st, derived_inputs(st, chosen, kept), ir.output)
    total = Cost()
    for n, p in st.order:
        if n not in live:
            continue
        if isinstance(p, ChoiceNode):
            total += candidate_cost(chosen[n], ir.node(p.inputs[0]).shape, registry)
        elif isinstance(p, OpNode):
            total += op_cost(p.call, [ir.node(x).shape for x in p.inputs], registry)
    return total
