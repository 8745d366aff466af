"""Calls in the interpreter: built-in ops, composite ops, cells, `sum`/`concat`, `min`/`max`.

Arguments follow one rule everywhere: tensors first, by position; then integers by position
in the callee's parameter order or by keyword. Binding is strict (unknown keyword, missing
argument, a tensor where an integer belongs are located errors) because a mistake caught
here costs a second; the same mistake caught by torch costs a GPU job.
"""

from __future__ import annotations

from dasc.compiler.choices import Choices
from dasc.compiler.emit import Decision, GraphTarget
from dasc.compiler.ir import Candidate, OpCall, Region
from dasc.compiler.scope import Frame, RegionCtx
from dasc.compiler.values import IdPool, Naming, Tensor, Value, did_you_mean
from dasc.dsl import ast
from dasc.errors import NameError_, ShapeError, Span, TypeError_
from dasc.ops.registry import REGISTRY, OpSpec, resolve_args

Bound = dict[str, tuple[int, Span]]
Keywords = list[tuple[str, int, Span]]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class Calls(Choices):
    """Mixed into `Interpreter`; needs its `expr`, `int`, `tensor`, `run`, `callables`."""

    def init_calls(self) -> None:
        self.graph: GraphTarget | None = None
        self.regions: list[Region] = []
        self.cell_counts: dict[str, int] = {}
        self.scopes = IdPool()
        self.first_of_key: dict[str, tuple[str, list[Decision]]] = {}
        self.candidates: dict[tuple, Candidate] = {}

    # ------------------------------------------------------------------ dispatch

    def call(self, e: ast.Call, frame: Frame, naming: Naming, root: bool) -> Value:
        fn = e.func.id
        if e.keep is not None and fn != "sum":
            raise TypeError_(f"`keep` selects inputs of a `sum`, not of `{fn}`", e.keep.span,
                             "write sum(a, b, c) keep 2")
        if fn in ("min", "max"):
            return self.minmax(e, frame, naming)
        if fn in ("sum", "concat"):
            return self.combine(e, frame, naming, root)
        if fn in self.g.ops:
            return self.composite(e, frame, naming, root)
        if fn in self.g.cells:
            return self.cell(e, frame)
        spec = REGISTRY.get(fn)
        if spec is not None:
            return self.builtin(e, spec, frame, naming, root)
        if fn in frame.vars or fn in self.g.params:
            raise TypeError_(f"`{fn}` is a variable, not an op", e.func.span)
        raise NameError_(f"unknown op `{fn}`", e.func.span,
                         did_you_mean(fn, self.callables() - {"choice"}))

    def need_target(self, frame: Frame, fn: str, span: Span) -> None:
        if frame.target is None:
            raise TypeError_(f"`{fn}(...)` builds a tensor, but only integers are allowed here",
                             span, "parameters, loop bounds and constraint limits are integers")

    def no_recursion(self, fn: str, frame: Frame, span: Span) -> None:
        if fn in frame.stack:
            chain = " -> ".join(frame.stack[frame.stack.index(fn):] + (fn,))
            raise TypeError_(f"`{fn}` calls itself ({chain})", span,
                             "composite ops and cells are expanded inline, so they cannot be "
                             "recursive; repeat them with a for loop instead")

    # ------------------------------------------------------------------ arguments

    def positional(self, e: ast.Call, frame: Frame, naming: Naming, tensor_names: list[str],
                   int_names: list[str]) -> tuple[list[Tensor], list[tuple[int, Span]]]:
        """Evaluate positional arguments: the tensors, then integers."""
        fn = e.func.id
        n_tensors = len(tensor_names)
        shown = tensor_names + int_names[:2] + (["..."] if len(int_names) > 2 else [])
        usage = f"{fn}({', '.join(shown)})"
        tensors: list[Tensor] = []
        ints: list[tuple[int, Span]] = []
        for i, a in enumerate(e.args):
            v = self.expr(a, frame, naming)
            if i < n_tensors:
                if not isinstance(v, Tensor):
                    raise TypeError_(
                        f"`{fn}` expects a tensor as argument {i + 1}, got the integer {v}",
                        a.span, f"tensor arguments come first: {usage}")
                tensors.append(v)
            elif isinstance(v, Tensor):
                raise TypeError_(
                    f"`{fn}` takes {_plural(n_tensors, 'tensor argument')}, "
                    f"but argument {i + 1} is a tensor", a.span,
                    "combine tensors with sum(a, b) or concat(a, b) first"
                    if n_tensors else None)
            else:
                ints.append((v, a.span))
        if len(tensors) < n_tensors:
            raise TypeError_(
                f"`{fn}` takes {_plural(n_tensors, 'tensor argument')}, got {len(tensors)}",
                e.span, f"call it as {usage}")
        return tensors, ints

    def keywords(self, kwargs: tuple[ast.Keyword, ...], frame: Frame, naming: Naming
                 ) -> Keywords:
        out: Keywords = []
        for kw in kwargs:
            if any(k == kw.name for k, _, _ in out):
                raise TypeError_(f"keyword `{kw.name}` given twice", kw.span)
            v = self.expr(kw.value, frame, naming)
            if isinstance(v, Tensor):
                raise TypeError_(f"`{kw.name}=` expects an integer, got a tensor", kw.span,
                                 "tensor arguments are passed by position, first")
            out.append((kw.name, v, kw.span))
        return out

    def bind(self, fn: str, names: list[str], positional: list[tuple[int, Span]],
             keywords: Keywords) -> Bound:
        """Match integer arguments to parameter names (no defaults yet)."""
        listing = ", ".join(names) or "none"
        if len(positional) > len(names):
            raise TypeError_(
                f"`{fn}` takes {_plural(len(names), 'integer argument')} after its tensors, "
                f"got {len(positional)}", positional[len(names)][1],
                f"its integer parameters are: {listing}")
        out: Bound = dict(zip(names, positional))
        for k, v, span in keywords:
            if k not in names:
                raise TypeError_(f"`{fn}` has no parameter `{k}`", span,
                                 did_you_mean(k, names) or f"its parameters are: {listing}")
            if k in out:
                raise TypeError_(f"`{fn}` got `{k}` twice (by position and by keyword)", span)
            out[k] = (v, span)
        return out

    def op_call(self, spec: OpSpec, bound: Bound, span: Span) -> OpCall:
        """Range-check a built-in op's arguments and fill in its defaults, in its order."""
        for p in spec.params:
            if p.name in bound:
                v, vspan = bound[p.name]
                high = getattr(p, "maximum", None)
                if v < p.minimum or (high is not None and v > high):
                    what = f"between {p.minimum} and {high}" if high is not None else \
                        f"at least {p.minimum}"
                    if p.name == "c":
                        raise ShapeError(f"`{spec.name}` would produce {v} channels", vspan,
                                         f"a channel count must be {what}; check the "
                                         "expression (a division that rounds down to 0?)")
                    raise ShapeError(f"`{spec.name}`: {p.name}={v} is out of range", vspan,
                                     f"{p.name} must be {what}")
            elif p.required:
                raise TypeError_(f"`{spec.name}` needs the argument `{p.name}`", span,
                                 f"write {spec.name}(x, {p.name}=...)")
        values = resolve_args(spec, {k: v for k, (v, _) in bound.items()})
        return OpCall(spec.name, tuple((p.name, values[p.name]) for p in spec.params
                                       if p.name in values))

    def bind_sig(self, fn: str, sig: ast.Signature, positional: list[tuple[int, Span]],
                 keywords: Keywords, span: Span) -> dict[str, int]:
        """Bind a composite op's or cell's integers; defaults see globals and earlier ones."""
        tnames = {p.name.id for p in sig.tensors}
        for k, _, kspan in keywords:
            if k in tnames:
                raise TypeError_(f"`{k}` is a tensor parameter of `{fn}`", kspan,
                                 "tensor arguments are passed by position, first")
        bound = self.bind(fn, [p.name.id for p in sig.ints], positional, keywords)
        out: dict[str, int] = {}
        for p in sig.ints:
            name = p.name.id
            if name in bound:
                out[name] = bound[name][0]
            elif p.default is None:
                raise TypeError_(f"`{fn}` needs the argument `{name}`", span,
                                 f"pass it by position or as {name}=...")
            else:
                out[name] = self.int(p.default, self.module_frame(out),
                                     f"the default of `{name}`")
        return out

    # ------------------------------------------------------------------ the callees

    def minmax(self, e: ast.Call, frame: Frame, naming: Naming) -> int:
        fn = e.func.id
        if e.kwargs or not e.args:
            raise TypeError_(f"`{fn}` takes one or more integers, no keywords", e.span)
        vals = [self.int(a, frame, f"an argument of `{fn}`", naming) for a in e.args]
        return min(vals) if fn == "min" else max(vals)

    def combine(self, e: ast.Call, frame: Frame, naming: Naming, root: bool) -> Tensor:
        fn = e.func.id
        self.need_target(frame, fn, e.span)
        if e.kwargs:
            raise TypeError_(f"`{fn}` takes no keyword arguments", e.kwargs[0].span)
        if not e.args:
            raise TypeError_(f"`{fn}` needs at least one tensor", e.span)
        inputs = tuple(self.tensor(a, frame, naming, f"argument {k + 1} of {fn}", edge=k)
                       for k, a in enumerate(e.args))
        keep = None
        if e.keep is not None:
            if frame.kind == "op":
                raise TypeError_(f"input selection (`keep`) inside composite op `{frame.name}`",
                                 e.keep.span, "composite ops are fixed; select inputs in a "
                                 "cell or the network body")
            keep = self.int(e.keep, frame, "`keep`", naming)
            if not 1 <= keep <= len(inputs):
                raise TypeError_(f"`keep {keep}` on a sum of {_plural(len(inputs), 'input')}",
                                 e.keep.span, f"keep between 1 and {len(inputs)} inputs")
        node_id = naming.root(fn) if root else naming.child(fn)
        return frame.target.combine(node_id, fn, inputs, keep, e.span, frame)

    def builtin(self, e: ast.Call, spec: OpSpec, frame: Frame, naming: Naming,
                root: bool) -> Tensor:
        fn = e.func.id
        self.need_target(frame, fn, e.span)
        arity = spec.arity if spec.arity >= 0 else len(e.args)
        tnames = ["x", "y", "z"][:arity] if arity <= 3 else [f"x{i}" for i in range(arity)]
        tensors, ints = self.positional(e, frame, naming, tnames,
                                        [p.name for p in spec.params])
        bound = self.bind(fn, [p.name for p in spec.params], ints,
                          self.keywords(e.kwargs, frame, naming))
        call = self.op_call(spec, bound, e.span)
        node_id = naming.root(fn) if root else naming.child(fn)
        return frame.target.op(node_id, call, tuple(tensors), e.span, frame)

    def composite(self, e: ast.Call, frame: Frame, naming: Naming, root: bool) -> Tensor:
        fn = e.func.id
        decl = self.g.ops[fn]
        self.need_target(frame, fn, e.span)
        self.no_recursion(fn, frame, e.func.span)
        tensors, ints = self.positional(e, frame, naming, *_names(decl.sig))
        values = self.bind_sig(fn, decl.sig, ints, self.keywords(e.kwargs, frame, naming),
                               e.span)
        slot = naming.root(fn) if root else naming.child(fn)
        group = f"{fn}@{slot}" if not frame.group else f"{frame.group}/{fn}@{slot}"
        local: dict[str, Value] = {p.name.id: t for p, t in zip(decl.sig.tensors, tensors)}
        local.update(values)
        sub = Frame("op", fn, local, frame.target, frame.pool, prefix=slot, scope=frame.scope,
                    region=frame.region, group=group, stack=frame.stack + (fn,),
                    ret_base=slot)
        return self.run_body(decl, sub, e.span)

    def run_body(self, decl: ast.OpDecl | ast.CellDecl, sub: Frame, span: Span) -> Tensor:
        what = "cell" if isinstance(decl, ast.CellDecl) else "op"
        if not self.run(decl.body, sub):
            raise TypeError_(f"{what} `{decl.name.id}` ended without `return`", span,
                             f"every path through `{decl.name.id}` must return a tensor",
                             notes=(f"{decl.name.span}: `{decl.name.id}` is defined here",))
        if not isinstance(sub.result, Tensor):
            raise TypeError_(f"{what} `{decl.name.id}` returned the integer {sub.result}", span,
                             f"a {what} must return a tensor")
        return sub.result

    def cell(self, e: ast.Call, frame: Frame) -> Tensor:
        fn = e.func.id
        decl = self.g.cells[fn]
        self.need_target(frame, fn, e.span)
        self.no_recursion(fn, frame, e.func.span)
        if frame.kind != "network" or self.graph is None:
            raise TypeError_(f"cell `{fn}` used inside {frame.kind} `{frame.name}`",
                             e.func.span, "cells are instantiated by the network body; "
                             "inside cells and ops, use composite ops")
        naming = Naming(frame.pool, None)
        tensors, ints = self.positional(e, frame, naming, *_names(decl.sig))
        values = self.bind_sig(fn, decl.sig, ints, self.keywords(e.kwargs, frame, naming),
                               e.span)
        index = self.cell_counts.get(fn, 0)
        self.cell_counts[fn] = index + 1
        scope = self.scopes.fresh(f"{fn}{index}")
        if decl.sharing == "independent":
            key = f"{fn}[{scope}]"
        else:
            key = f"{fn}[{','.join(f'{p.id}={values[p.id]}' for p in decl.share_per)}]"
        local: dict[str, Value] = {p.name.id: t for p, t in zip(decl.sig.tensors, tensors)}
        local.update(values)
        sub = Frame("cell", fn, local, frame.target, frame.pool, prefix=scope, scope=scope,
                    region=RegionCtx(scope, key), stack=frame.stack + (fn,))
        out = self.run_body(decl, sub, e.span)
        self.check_sharing(key, scope, self.graph.decisions.get(scope, []), e.span)
        self.regions.append(Region(scope, fn, key, tuple(str(t.ref) for t in tensors),
                                   str(out.ref), self.first_of_key[key][0] == scope,
                                   span=e.span))
        return out

    def check_sharing(self, key: str, scope: str, mine: list[Decision], span: Span) -> None:
        """Instances with one sharing key use one α, so their choices must match exactly."""
        first = self.first_of_key.get(key)
        if first is None:
            self.first_of_key[key] = (scope, mine)
            return
        other, theirs = first
        diff = _difference(other, theirs, scope, mine)
        if diff:
            cell = key.split("[", 1)[0]
            raise TypeError_(
                f"instances `{other}` and `{scope}` of cell `{cell}` share α (key `{key}`) "
                f"but their choices differ: {diff}", span,
                "instances sharing α need the same choices; add the parameter that changes "
                f"them to `shared per`, or declare `{cell}` independent")


def _names(sig: ast.Signature) -> tuple[list[str], list[str]]:
    return [p.name.id for p in sig.tensors], [p.name.id for p in sig.ints]


def _difference(a: str, theirs: list[Decision], b: str, mine: list[Decision]) -> str | None:
    """The first difference between two instances' decisions, in words."""
    by_local = {d.local: d for d in mine}
    known = {d.local for d in theirs}
    for d in theirs:
        other = by_local.get(d.local)
        if other is None:
            return f"`{a}` has {d.describe()}, `{b}` does not"
        if other != d:
            return f"`{a}` has {d.describe()}, `{b}` has {other.describe()}"
    for d in mine:
        if d.local not in known:
            return f"`{b}` has {d.describe()}, `{a}` does not"
    return None
