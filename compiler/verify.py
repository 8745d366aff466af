"""The IR verifier: invariants every pass must leave intact, checked between passes.

A failure here is a bug in dasc, not a mistake of the user, so it raises `VerifyError` (an
`AssertionError`, never a `DascError`: the CLI must not present it as the user's fault) naming
the pass after which the IR went wrong. Checks depend on how far the pipeline got: shapes are
required after `shapes`, one common shape per choice and per sum after `adapters`.
"""

from __future__ import annotations

import networkx as nx

from dasc.compiler.ir import (
    IR, BlockNode, Candidate, ChoiceNode, CombineNode, InputNode, OpNode, OutputNode,
)
from dasc.ops.registry import REGISTRY, Shape

_PAYLOADS = (InputNode, OpNode, ChoiceNode, CombineNode, OutputNode)
_UNSHAPED = ("expand",)
_UNADAPTED = ("expand", "shapes")


class VerifyError(AssertionError):
    """The IR broke an invariant: a compiler bug. `stage` names the pass that ran last."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"IR invalid after `{stage}`: {message}")
        self.stage = stage
        self.detail = message


def verify(ir: IR, stage: str, *, shaped: bool | None = None,
           adapted: bool | None = None) -> None:
    """Check `ir` after the pass `stage`; raise VerifyError on the first broken invariant.

    `shaped`/`adapted` default from the stage: nothing is shaped after `expand`, adapters are
    expected after every stage but `expand` and `shapes` (`load`, `prune`, ...).
    """
    shaped = stage not in _UNSHAPED if shaped is None else shaped
    adapted = stage not in _UNADAPTED if adapted is None else adapted
    _Checker(ir, stage, shaped, adapted).run()


class _Checker:
    def __init__(self, ir: IR, stage: str, shaped: bool, adapted: bool) -> None:
        self.ir, self.stage, self.shaped, self.adapted = ir, stage, shaped, adapted
        self.checked: set[int] = set()  # ids of candidates already checked (they are shared)

    def fail(self, message: str) -> None:
        raise VerifyError(self.stage, message)

    def run(self) -> None:
        g = self.ir.graph
        for n, data in g.nodes(data=True):
            if not isinstance(data.get("node"), _PAYLOADS):
                self.fail(f"node {n!r} has no IR payload")
        if not nx.is_directed_acyclic_graph(g):
            self.fail(f"the graph has a cycle: {nx.find_cycle(g)}")
        inputs = [n for n, d in g.nodes(data=True) if isinstance(d["node"], InputNode)]
        outputs = [n for n, d in g.nodes(data=True) if isinstance(d["node"], OutputNode)]
        if len(inputs) != 1 or len(outputs) != 1:
            self.fail(f"expected one input and one output, got {inputs} and {outputs}")
        if any(True for _ in g.successors(outputs[0])):
            self.fail("the output node has consumers")
        regions = self.regions()
        for n, data in g.nodes(data=True):
            self.node(n, data["node"], regions)
        self.sharing()

    # ------------------------------------------------------------------ nodes

    def node(self, n: str, p, regions: set[str]) -> None:
        g = self.ir.graph
        for src in p.inputs:
            if src not in g:
                self.fail(f"{n!r} reads {src!r}, which is not in the graph")
        if set(g.predecessors(n)) != set(p.inputs):
            self.fail(f"edges into {n!r} {sorted(g.predecessors(n))} do not mirror its "
                      f"inputs {list(p.inputs)}")
        if p.scope and p.scope not in regions:
            self.fail(f"{n!r} is in scope {p.scope!r}, which is no region")
        if isinstance(p, InputNode) and p.inputs:
            self.fail(f"the input {n!r} has inputs")
        if isinstance(p, OutputNode) and len(p.inputs) != 1:
            self.fail(f"the output reads {len(p.inputs)} tensors")
        if isinstance(p, OpNode):
            self.op(n, p.call.op, len(p.inputs))
        if isinstance(p, ChoiceNode):
            self.choice(n, p, regions)
        if isinstance(p, CombineNode):
            self.combine(n, p, regions)
        if self.shaped:
            self.shape(n, p.shape)

    def op(self, where: str, op: str, n_inputs: int) -> None:
        spec = REGISTRY.get(op)
        if spec is None:
            self.fail(f"{where} uses the unknown op {op!r}")
        if spec.arity >= 0 and spec.arity != n_inputs:
            self.fail(f"{where}: {op} takes {spec.arity} inputs, has {n_inputs}")

    def shape(self, where: str, s: Shape | None) -> None:
        if not isinstance(s, Shape) or min(s.c, s.h, s.w) < 1:
            self.fail(f"{where} has no valid shape ({s})")

    def choice(self, n: str, p: ChoiceNode, regions: set[str]) -> None:
        if len(p.inputs) != 1:
            self.fail(f"choice {n!r} reads {len(p.inputs)} tensors")
        if not p.candidates:
            self.fail(f"choice {n!r} has no candidates")
        names = [c.name for c in p.candidates]
        if len(set(names)) != len(names):
            self.fail(f"choice {n!r} has duplicate candidates {names}")
        if not p.alpha or p.region not in regions:
            self.fail(f"choice {n!r} has alpha {p.alpha!r} in unknown region {p.region!r}")
        if p.region != (p.scope or "network"):
            self.fail(f"choice {n!r} in scope {p.scope!r} claims region {p.region!r}")
        for c in p.candidates:
            self.block(f"{n}[{c.name}]", c)
            if self.adapted and c.shape != p.shape:
                self.fail(f"candidate {c.name} of {n!r} gives {c.shape}, the choice {p.shape}")

    def block(self, where: str, c: Candidate) -> None:
        if id(c) in self.checked:
            return
        self.checked.add(id(c))
        if not c.nodes:
            self.fail(f"{where} has no ops")
        for i, b in enumerate(c.nodes):
            if not isinstance(b, BlockNode) or any(not -1 <= j < i for j in b.inputs):
                self.fail(f"{where} op {i} reads outside the block: {b}")
            if b.call.op not in ("sum", "concat"):
                self.op(f"{where} op {i}", b.call.op, len(b.inputs))
            if self.shaped:
                self.shape(f"{where} op {i}", b.shape)

    def combine(self, n: str, p: CombineNode, regions: set[str]) -> None:
        if p.kind not in ("sum", "concat") or not p.inputs:
            self.fail(f"combine {n!r} is a {p.kind!r} of {len(p.inputs)} inputs")
        if p.keep is not None:
            if p.kind != "sum" or not 1 <= p.keep <= len(p.inputs):
                self.fail(f"{n!r} keeps {p.keep} of {len(p.inputs)} inputs")
            if not p.select or p.region not in regions:
                self.fail(f"{n!r} selects inputs without a select key or region")
        elif p.select:
            self.fail(f"{n!r} has a select key but no keep")
        if self.adapted and p.kind == "sum":
            shapes = {self.ir.node(i).shape for i in p.inputs} | {p.shape}
            if len(shapes) != 1:
                self.fail(f"sum {n!r} mixes shapes {sorted(map(str, shapes))}")

    # ------------------------------------------------------------------ regions, sharing

    def regions(self) -> set[str]:
        ids = [r.id for r in self.ir.regions]
        if len(set(ids)) != len(ids):
            self.fail(f"duplicate region ids {ids}")
        if "network" not in ids:
            self.fail("there is no `network` region")
        leaders: dict[str, str] = {}
        for r in self.ir.regions:
            if r.output not in self.ir.graph:
                self.fail(f"region {r.id!r} outputs {r.output!r}, which is not in the graph")
            if r.representative:
                if r.key in leaders:
                    self.fail(f"regions {leaders[r.key]!r} and {r.id!r} both represent {r.key}")
                leaders[r.key] = r.id
            elif r.key not in leaders:
                self.fail(f"region {r.id!r} of key {r.key} comes before its representative")
        return set(ids)

    def sharing(self) -> None:
        """Equal α keys must mean identical candidate lists; equal select keys, equal keeps."""
        seen: dict[str, tuple] = {}
        for n, p in self.ir.nodes():
            if isinstance(p, ChoiceNode):
                key, sig = p.alpha, tuple((c.name, c.skip, c.zero) for c in p.candidates)
            elif isinstance(p, CombineNode) and p.select:
                key, sig = "select:" + p.select, (p.keep, len(p.inputs))
            else:
                continue
            if seen.setdefault(key, sig) != sig:
                self.fail(f"{n!r} shares key {key!r} with a different decision: "
                          f"{sig} vs {seen[key]}")
