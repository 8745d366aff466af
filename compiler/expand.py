"""AST -> IR: evaluate parameters, unroll the network, instantiate cells, build choices.

`expand` is the first pass. It checks what can be checked without shapes (names, arities,
types, recursion, sizes), runs the network body through the interpreter (`compiler.evaluate`)
and returns an IR whose tensor shapes are still unset, except the input's. The node naming
scheme is in docs/language-spec.md ("Naming of IR nodes and α keys").

Nodes that do not reach the network's output are dropped at the end: an unused choice would
otherwise count as a decision that changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import networkx as nx

import dasc.ops  # noqa: F401  (registers the built-in ops)
from dasc.compiler.emit import GraphTarget, local_id
from dasc.compiler.evaluate import Interpreter
from dasc.compiler.ir import (
    IR, ChoiceNode, CombineNode, CountRule, InputNode, OutputNode, PathRule, Region, Rule,
    SearchSetting,
)
from dasc.compiler.scope import LANGUAGE_CALLS, Frame, Globals, RegionCtx
from dasc.compiler.values import Budget, IdPool, Tensor, did_you_mean
from dasc.dsl import ast
from dasc.errors import ConstraintError, NameError_, ShapeError, Span, TypeError_, UsageError
from dasc.ops.registry import REGISTRY, Shape

OUTPUT_ID = "output"


def expand(m: ast.Module, overrides: Mapping[str, int] | None = None) -> IR:
    """Unroll module `m` with `--set` values `overrides` into an IR (shapes unset)."""
    try:
        return _Expander(m, dict(overrides or {})).run()
    except RecursionError:
        raise TypeError_("the space is nested too deeply to expand", Span.of_file(m.file),
                         "flatten deeply nested expressions or chains of composite ops"
                         ) from None


class _Expander:
    def __init__(self, m: ast.Module, overrides: dict[str, int]) -> None:
        self.m = m
        self.overrides = overrides
        self.g = Globals()
        self.interp = Interpreter(self.g, Budget())

    def run(self) -> IR:
        space, network, input_decl = self.collect()
        self.check_overrides()
        self.evaluate_globals()
        if network is None:
            raise NameError_("the space has no `network { ... }` block", Span.of_file(self.m.file),
                             "add one: network { x = ... return linear(gap(x), classes) }")
        if input_decl is None:
            raise NameError_("the space declares no `input`", Span.of_file(self.m.file),
                             "add one, e.g. `input image [3, 32, 32]`")
        name = space.name.id if space else _stem(self.m.file)
        ir = IR(name, nx.DiGraph(), tuple(self.g.params.items()),
                span=space.span if space else network.span)
        self.build_network(ir, network, input_decl)
        _drop_dead(ir)
        ir.regions = _regions(ir, self.interp.regions, network, input_decl.name.id)
        _check_live_sharing(ir)
        ir.rules = tuple(self.rules(ir))
        ir.search = tuple(self.search())
        return ir

    # ------------------------------------------------------------------ declarations

    def collect(self) -> tuple[ast.SpaceDecl | None, ast.NetworkDecl | None,
                               ast.InputDecl | None]:
        """Register ops and cells; reject duplicates and bodies without `return`."""
        first: dict[str, Span] = {}
        space = network = input_decl = None
        for d in self.m.decls:
            if isinstance(d, ast.SpaceDecl):
                if space is not None:
                    raise _twice("space", "`space` is declared twice", d.span, space.span)
                space = d
            elif isinstance(d, ast.NetworkDecl):
                if network is not None:
                    raise _twice("network", "the space has two `network` blocks", d.span,
                                 network.span)
                _needs_return(d.body, "the network", d.span)
                network = d
            elif isinstance(d, ast.InputDecl):
                if input_decl is not None:
                    raise _twice("input", "the space has two inputs", d.span, input_decl.span)
                input_decl = d
            name = getattr(d, "name", None)
            if isinstance(name, ast.Name) and not isinstance(d, ast.SpaceDecl):
                if name.id in first:
                    raise _twice(name.id, f"`{name.id}` is defined twice", name.span,
                                 first[name.id])
                first[name.id] = name.span
            if isinstance(d, (ast.OpDecl, ast.CellDecl)):
                self.check_callable(d)
                table = self.g.ops if isinstance(d, ast.OpDecl) else self.g.cells
                table[d.name.id] = d
        return space, network, input_decl

    def check_callable(self, d: ast.OpDecl | ast.CellDecl) -> None:
        what = "op" if isinstance(d, ast.OpDecl) else "cell"
        name = d.name.id
        if name in REGISTRY or name in LANGUAGE_CALLS:
            raise NameError_(f"`{name}` is already a built-in op", d.name.span,
                             f"give the {what} another name")
        seen: dict[str, Span] = {}
        for p in d.sig.tensors + d.sig.ints:
            if p.name.id in seen:
                raise _twice(p.name.id, f"parameter `{p.name.id}` of `{name}` is declared twice",
                             p.name.span, seen[p.name.id])
            seen[p.name.id] = p.name.span
        _needs_return(d.body, f"{what} `{name}`", d.name.span)
        if isinstance(d, ast.CellDecl):
            ints = [p.name.id for p in d.sig.ints]
            for p in d.share_per:
                if p.id not in ints:
                    raise NameError_(
                        f"`shared per {p.id}`: `{p.id}` is not an integer parameter of `{name}`",
                        p.span, did_you_mean(p.id, ints)
                        or f"its integer parameters are: {', '.join(ints) or 'none'}")

    def check_overrides(self) -> None:
        known = [d.name.id for d in self.m.decls if isinstance(d, ast.ParamDecl)]
        for key, value in self.overrides.items():
            if key not in known:
                close = did_you_mean(key, known)
                raise UsageError(
                    f"--set {key}: the space has no parameter `{key}`", None,
                    (close + " " if close else "") + f"its parameters are: "
                    f"{', '.join(known) or 'none'}")
            if isinstance(value, bool) or not isinstance(value, int):
                raise UsageError(f"--set {key}={value!r}: parameters are integers", None)

    def evaluate_globals(self) -> None:
        """Parameters, op sets and the input, in declaration order (use after definition)."""
        interp = self.interp
        for d in self.m.decls:
            if isinstance(d, ast.ParamDecl):
                name = d.name.id
                if name in self.overrides:
                    self.g.params[name] = self.overrides[name]
                else:
                    self.g.params[name] = interp.int(d.value, interp.module_frame(),
                                                     f"parameter `{name}`")
            elif isinstance(d, ast.OpSetDecl):
                self.g.opsets[d.name.id] = interp.opset(d.name.id, d.members,
                                                        interp.module_frame(), d.span)
            elif isinstance(d, ast.InputDecl):
                self.g.input_name = d.name.id

    def input_shape(self, d: ast.InputDecl) -> Shape:
        dims = []
        for what, e in zip(("channels", "height", "width"), d.dims):
            v = self.interp.int(e, self.interp.module_frame(), f"the input's {what}")
            if v < 1:
                raise ShapeError(f"the input `{d.name.id}` would have {v} {what}", e.span,
                                 f"the input's {what} must be at least 1")
            dims.append(v)
        return Shape(*dims)

    # ------------------------------------------------------------------ the network

    def build_network(self, ir: IR, network: ast.NetworkDecl, input_decl: ast.InputDecl
                      ) -> None:
        input_id = input_decl.name.id
        target = GraphTarget(ir, self.interp.budget)
        self.interp.graph = target
        ir.add(input_id, InputNode(input_id, shape=self.input_shape(input_decl),
                                   span=input_decl.span))
        pool = IdPool([input_id, OUTPUT_ID])
        frame = Frame("network", "network", {}, target, pool,
                      region=RegionCtx("network", "network"))
        if not self.interp.run(network.body, frame):
            raise TypeError_("the network ended without `return`", network.span,
                             "every path through the network must return the logits")
        out = frame.result
        if not isinstance(out, Tensor):
            raise TypeError_(f"the network returned the integer {out}", frame.result_span,
                             "return the logits tensor, e.g. return linear(gap(x), classes)")
        ir.add(OUTPUT_ID, OutputNode((str(out.ref),), span=frame.result_span))

    # ------------------------------------------------------------------ rules, search

    def rules(self, ir: IR) -> list[Rule]:
        out: list[Rule] = []
        frame = self.interp.module_frame()
        for d in self.m.decls:
            if isinstance(d, ast.PathConstraint):
                cell = self.scope_cell(d.scope)
                k = self.interp.int(d.min_nonskip, frame, "a path constraint's bound")
                if k < 0:
                    raise ConstraintError(f"`paths >= {k}`: the bound must be >= 0",
                                          d.min_nonskip.span)
                out.append(PathRule(cell, k, span=d.span))
            elif isinstance(d, ast.CountConstraint):
                cell = self.scope_cell(d.scope)
                op = d.op.id
                if op not in REGISTRY and op not in self.g.ops:
                    raise NameError_(f"unknown op `{op}`", d.op.span,
                                     did_you_mean(op, REGISTRY.names() + list(self.g.ops)))
                k = self.interp.int(d.max_count, frame, "a count constraint's bound")
                if k < 0:
                    raise ConstraintError(f"`count {op} <= {k}`: the bound must be >= 0",
                                          d.max_count.span)
                if not _offered(ir, op, cell):
                    where = f"in cell `{cell}`" if cell else "in the space"
                    raise ConstraintError(f"no choice {where} offers `{op}`", d.op.span,
                                          "a count constraint limits how many choices pick "
                                          "an op; name an op of one of the choices' op sets")
                out.append(CountRule(cell, op, k, span=d.span))
        return out

    def scope_cell(self, scope: ast.Name | None) -> str | None:
        if scope is None:
            return None
        if scope.id not in self.g.cells:
            raise NameError_(f"unknown cell `{scope.id}`", scope.span,
                             did_you_mean(scope.id, self.g.cells))
        return scope.id

    def search(self) -> list[SearchSetting]:
        out: dict[str, SearchSetting] = {}
        for d in self.m.decls:
            if not isinstance(d, ast.SearchDecl):
                continue
            for s in d.settings:
                if s.key.id in out:
                    raise _twice(s.key.id, f"search setting `{s.key.id}` is given twice",
                                 s.key.span, out[s.key.id].span)
                v = s.value
                value = v.id if isinstance(v, ast.Name) else v.value
                out[s.key.id] = SearchSetting(s.key.id, value, span=s.span)
        return list(out.values())


# ---------------------------------------------------------------------- helpers


def _stem(file: str) -> str:
    return "space" if file.startswith("<") else Path(file).stem


def _twice(name: str, message: str, span: Span, first: Span | None) -> NameError_:
    notes = (f"{first}: first defined here",) if first is not None else ()
    return NameError_(message, span, f"rename or remove one of the two `{name}`", notes=notes)


def _needs_return(body: tuple[ast.Stmt, ...], what: str, span: Span) -> None:
    def has(stmts: tuple[ast.Stmt, ...]) -> bool:
        for st in stmts:
            if isinstance(st, ast.Return):
                return True
            if isinstance(st, ast.For) and has(st.body):
                return True
            if isinstance(st, ast.If) and (has(st.then) or has(st.orelse)):
                return True
        return False

    if not has(body):
        raise TypeError_(f"{what} has no `return`", span, "end the body with `return <tensor>`")


def _drop_dead(ir: IR) -> None:
    """Remove nodes whose value never reaches the output (the input always stays)."""
    live = nx.ancestors(ir.graph, OUTPUT_ID) | {OUTPUT_ID}
    live |= {n for n, d in ir.graph.nodes(data=True) if isinstance(d["node"], InputNode)}
    ir.graph.remove_nodes_from([n for n in list(ir.graph.nodes) if n not in live])


def _regions(ir: IR, cells: list[Region], network: ast.NetworkDecl, input_id: str
             ) -> tuple[Region, ...]:
    """The network region, then each live cell instance; first live instance of a key leads."""
    scopes = {p.scope for _, p in ir.nodes()}
    out = [Region("network", None, "network", (input_id,), OUTPUT_ID, True, span=network.span)]
    seen: set[str] = set()
    for r in cells:
        if r.id not in scopes and r.output not in ir.graph:
            continue
        out.append(Region(r.id, r.cell, r.key, r.inputs, r.output, r.key not in seen,
                          span=r.span))
        seen.add(r.key)
    return tuple(out)


def _check_live_sharing(ir: IR) -> None:
    """Instances sharing α must still have the same decisions once unused nodes are gone.

    Expansion compared the instances' choices as written; a choice whose value one instance
    uses and another ignores (`return if flag then y else x`) survives in only one of them.
    """
    live: dict[str, list[str]] = {}
    for node_id, p in ir.nodes():
        if isinstance(p, ChoiceNode) or (isinstance(p, CombineNode) and p.select):
            live.setdefault(p.scope, []).append(local_id(node_id, p.scope))
    first: dict[str, Region] = {}
    for r in ir.regions:
        if r.cell is None:
            continue
        lead = first.setdefault(r.key, r)
        mine, theirs = live.get(r.id, []), live.get(lead.id, [])
        if mine != theirs:
            gone = sorted(set(mine) ^ set(theirs))[0]
            has, lacks = (r, lead) if gone in mine else (lead, r)
            raise TypeError_(
                f"instances `{lead.id}` and `{r.id}` of cell `{r.cell}` share α (key "
                f"`{r.key}`) but `{has.id}` uses the decision `{gone}` and `{lacks.id}` "
                "ignores its value", r.span,
                "instances sharing α need the same choices; add the parameter that changes "
                f"them to `shared per`, or declare `{r.cell}` independent")


def _offered(ir: IR, op: str, cell: str | None) -> bool:
    regions = {r.id: r.cell for r in ir.regions}
    for _, node in ir.choices():
        if cell is not None and regions.get(node.region) != cell:
            continue
        if any(c.op == op for c in node.candidates):
            return True
    return False
