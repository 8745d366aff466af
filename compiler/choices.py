"""Choice points and op sets in the interpreter.

`choice(SET, x, kw=v)` becomes one `ChoiceNode` whose candidates are the set's members applied
to `x`: a built-in member is a one-op block, a composite member is its body expanded into
`BlockNode`s. Each candidate gets the member's own bound arguments plus the choice's keyword
arguments (the member's win), checked against what the op accepts.
"""

from __future__ import annotations

from dasc.compiler.emit import BlockTarget
from dasc.compiler.ir import BlockNode, Candidate
from dasc.compiler.scope import LANGUAGE_CALLS, Frame
from dasc.compiler.values import IdPool, Member, Naming, OpSet, Tensor, did_you_mean
from dasc.dsl import ast
from dasc.errors import NameError_, Span, TypeError_
from dasc.ops.registry import REGISTRY

Merged = dict[str, tuple[int, Span]]


class Choices:
    """Mixed into `Interpreter` (through `Calls`)."""

    def choice(self, e: ast.Choice, frame: Frame, naming: Naming, root: bool,
               edge: int | None) -> Tensor:
        self.need_target(frame, "choice", e.span)
        if frame.kind == "op":
            raise TypeError_(
                f"choice inside composite op `{frame.name}`", e.span,
                "composite ops are fixed building blocks; put the choice in a cell or the "
                f"network body, or make `{frame.name}` a cell")
        opset = self.resolve_opset(e.opset, frame)
        x = self.tensor(e.arg, frame, naming, "the input of choice")
        call_kw = self.keywords(e.kwargs, frame, naming)
        candidates = tuple(self.candidate(m, call_kw, frame, e.span) for m in opset.members)
        desc = "choice" if edge is None else f"e{edge}"
        node_id = naming.root(desc) if root else naming.child(desc)
        return frame.target.choice(node_id, candidates, x, e.span, frame)

    # ------------------------------------------------------------------ op sets

    def resolve_opset(self, ref: ast.Name | ast.OpSetLit, frame: Frame) -> OpSet:
        if isinstance(ref, ast.OpSetLit):
            return self.opset("{...}", ref.members, frame, ref.span)
        name = ref.id
        if name in frame.opsets:
            return frame.opsets[name]
        if name in self.g.opsets:
            return self.g.opsets[name]
        if name in self.callables():
            raise TypeError_(f"`{name}` is an op, not an op set", ref.span,
                             f"write an inline set: choice({{{name}, ...}}, x)")
        raise NameError_(f"unknown op set `{name}`", ref.span,
                         did_you_mean(name, list(frame.opsets) + list(self.g.opsets)))

    def opset(self, name: str, members: tuple[ast.OpRef, ...], frame: Frame,
              span: Span) -> OpSet:
        """Evaluate an op set's members; unknown ops and keywords are reported here, once."""
        if not members:
            raise TypeError_(f"op set `{name}` is empty", span, "list at least one op")
        out: list[Member] = []
        for m in members:
            op = m.name.id
            if op in self.g.cells:
                raise TypeError_(f"cell `{op}` cannot be a member of an op set", m.name.span,
                                 "op sets hold built-in and composite ops; cells are "
                                 "instantiated by the network body")
            if op in LANGUAGE_CALLS:
                raise TypeError_(f"`{op}` cannot be a member of an op set", m.name.span)
            if op not in self.g.ops and op not in REGISTRY:
                raise NameError_(f"unknown op `{op}`", m.name.span,
                                 did_you_mean(op, REGISTRY.names() + list(self.g.ops)))
            kws = self.keywords(m.kwargs, frame, Naming(frame.pool, None))
            known = self.param_names(op)
            for k, _, kspan in kws:
                if k not in known:
                    raise TypeError_(f"`{op}` has no parameter `{k}`", kspan,
                                     did_you_mean(k, known)
                                     or f"its parameters are: {', '.join(known) or 'none'}")
            label = op if not kws else f"{op}({', '.join(f'{k}={v}' for k, v, _ in kws)})"
            if any(x.name == label for x in out):
                raise NameError_(f"op set `{name}` lists `{label}` twice", m.span)
            out.append(Member(label, op, tuple((k, v) for k, v, _ in kws),
                              tuple(s for _, _, s in kws), m.span))
        return OpSet(name, tuple(out), span)

    def param_names(self, op: str) -> list[str]:
        if op in self.g.ops:
            return [p.name.id for p in self.g.ops[op].sig.ints]
        return [p.name for p in REGISTRY.get(op).params]

    # ------------------------------------------------------------------ candidates

    def candidate(self, member: Member, call_kw, frame: Frame, span: Span) -> Candidate:
        """The member applied with the choice's keywords; equal requests share one object
        (DARTS builds the same eight candidates for every edge)."""
        key = (member, tuple(sorted((k, v) for k, v, _ in call_kw)), frame.stack)
        cached = self.candidates.get(key)
        if cached is None:
            cached = self.candidates[key] = self.make_candidate(member, call_kw, frame, span)
        else:
            self.budget.block_node(span)
        return cached

    def make_candidate(self, member: Member, call_kw, frame: Frame, span: Span) -> Candidate:
        merged: Merged = {k: (v, s) for k, v, s in call_kw}
        own = dict(member.kwargs)
        for (k, v), s in zip(member.kwargs, member.kwarg_spans):
            merged[k] = (v, s)
        known = self.param_names(member.op)
        for k, (_, kspan) in merged.items():
            if k not in known and k not in own:
                raise TypeError_(
                    f"candidate `{member.name}` has no parameter `{k}`", kspan,
                    f"a choice's keyword arguments go to every candidate and `{member.op}` "
                    f"takes only: {', '.join(known) or 'nothing'}; bind `{k}` in the op set on "
                    f"the members that take it: {{other_op({k}=...), {member.op}}}")
        keywords = [(k, v, s) for k, (v, s) in merged.items()]
        if member.op in self.g.ops:
            return self.composite_candidate(member, keywords, frame, span)
        spec = REGISTRY.get(member.op)
        if spec.arity != 1:
            raise TypeError_(
                f"`{member.op}` takes {'several' if spec.arity < 0 else spec.arity} tensors "
                "and cannot be a choice candidate", member.span,
                "a choice applies each candidate to one input tensor")
        call = self.op_call(spec, self.bind(member.op, known, [], keywords), span)
        self.budget.block_node(span)
        return Candidate(member.name, (BlockNode(call, (-1,), label=member.op),),
                         skip=spec.skip, zero=spec.zero, span=member.span, op=member.op)

    def composite_candidate(self, member: Member, keywords, frame: Frame,
                            span: Span) -> Candidate:
        """Expand a composite op's body into the candidate's block."""
        decl = self.g.ops[member.op]
        self.no_recursion(member.op, frame, member.span)
        if len(decl.sig.tensors) != 1:
            raise TypeError_(
                f"`{member.op}` takes {len(decl.sig.tensors)} tensors and cannot be a choice "
                "candidate", member.span, "a choice applies each candidate to one input tensor")
        values = self.bind_sig(member.op, decl.sig, [], keywords, span)
        target = BlockTarget(self.budget)
        local = {decl.sig.tensors[0].name.id: Tensor(-1), **values}
        sub = Frame("op", member.op, local, target, IdPool(), scope=frame.scope,
                    stack=frame.stack + (member.op,), ret_base=None)
        out = self.run_body(decl, sub, span)
        if out.ref == -1:
            raise TypeError_(
                f"composite op `{member.op}` returns its input unchanged, so it cannot be a "
                "candidate", member.span, "use skip_connect (or identity) for a pass-through")
        nodes = target.finish(int(out.ref))
        specs = [REGISTRY.get(n.call.op) for n in nodes]
        skip = all(s is not None and s.skip for s in specs)
        zero = specs[-1] is not None and specs[-1].zero
        return Candidate(member.name, nodes, skip=skip, zero=zero, span=member.span,
                         op=member.op)
