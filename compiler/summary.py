"""What `dasc compile` prints: a summary of a compiled space, as text and as JSON.

Everything here is computed from the IR by the compiler's own passes (counts by the DP, costs
by the cost model, adapters as the adapter pass recorded them), so the summary cannot drift
from what search, derive and export will do with the same space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dasc.compiler.adapters import adapters as adapter_infos
from dasc.compiler.arch import structure
from dasc.compiler.constraints import describe
from dasc.compiler.cost import supernet_cost
from dasc.compiler.count import count_satisfying, reps
from dasc.compiler.ir import IR, CombineNode, OpNode

SHOWN = 8  # adapters listed in the text summary


@dataclass(frozen=True)
class RuleStatus:
    """One constraint: as written, where, and how many architectures it allows on its own.
    `status`: "ok" (it removes some), "always met" (it removes none), "unsatisfiable"."""

    rule: str
    span: str
    satisfying: int
    status: str


@dataclass(frozen=True)
class Summary:
    """A compiled space in figures (see `to_text` / `to_json`)."""

    space: str
    params: tuple[tuple[str, int], ...]
    nodes: int
    ops: tuple[tuple[str, int], ...]
    choice_points: int
    alpha_keys: int
    input_selections: int
    select_keys: int
    sharing: tuple[tuple[str, int], ...]
    adapters: tuple[tuple[str, str | None, str], ...]
    rules: tuple[RuleStatus, ...]
    architectures: int
    satisfying: int
    supernet_params: int
    supernet_macs: int

    def to_json(self) -> dict[str, Any]:
        """Machine-readable: counts stay exact Python ints (JSON has no size limit)."""
        return {
            "space": self.space,
            "space_params": dict(self.params),
            "nodes": self.nodes,
            "ops": dict(self.ops),
            "choice_points": self.choice_points,
            "alpha_keys": self.alpha_keys,
            "input_selections": self.input_selections,
            "select_keys": self.select_keys,
            "sharing_keys": [{"key": k, "instances": n} for k, n in self.sharing],
            "adapters": [{"node": n, "candidate": c, "reason": r} for n, c, r in self.adapters],
            "constraints": [{"rule": r.rule, "at": r.span, "satisfying": r.satisfying,
                             "status": r.status} for r in self.rules],
            "architectures": self.architectures,
            "satisfying_architectures": self.satisfying,
            "params": self.supernet_params,
            "macs": self.supernet_macs,
        }

    def to_text(self) -> str:
        """For people: one aligned line per figure, lists indented below."""
        lines = [f"space {self.space}" + (f" ({', '.join(f'{k}={v}' for k, v in self.params)})"
                                          if self.params else "")]

        def row(label: str, value: str) -> None:
            lines.append(f"  {label:<15}{value}")

        fixed = ", ".join(f"{op} {n}" for op, n in self.ops[:8])
        row("nodes", f"{self.nodes}; fixed ops: {fixed}{', ...' if len(self.ops) > 8 else ''}")
        row("choices", f"{self.choice_points} choice points, {self.alpha_keys} α keys; "
                       f"{self.input_selections} input selections, {self.select_keys} keys")
        if self.sharing:
            row("sharing", ", ".join(f"{k} x{n}" for k, n in self.sharing))
        row("adapters", str(len(self.adapters)) if self.adapters else "none")
        lines += [f"    {n}{f'[{c}]' if c else ''}: {r}" for n, c, r in self.adapters[:SHOWN]]
        if len(self.adapters) > SHOWN:
            lines.append(f"    ... and {len(self.adapters) - SHOWN} more (--json lists all)")
        row("constraints", str(len(self.rules)) if self.rules else "none")
        lines += [f"    {r.rule}  [{r.status}; {_int(r.satisfying)} alone]  {r.span}"
                  for r in self.rules]
        row("architectures", _int(self.architectures))
        if self.satisfying != self.architectures:
            row("satisfying", _int(self.satisfying))
        row("supernet", f"{_int(self.supernet_params)} params, "
                        f"{_int(self.supernet_macs)} MACs")
        return "\n".join(lines) + "\n"


def _int(n: int) -> str:
    """Exact, with thousands separators; huge counts also in scientific notation. Written
    by hand because `str()` refuses ints over 4300 digits (CPython's conversion limit), and a
    space with thousands of choice points has such counts."""
    if n < 10 ** 15:
        return f"{n:,}"
    approx = f"{n:.3e}" if n < 10 ** 300 else None
    groups = []
    while n >= 1000:
        n, rest = divmod(n, 1000)
        groups.append(f"{rest:03d}")
    digits = len(groups) * 3 + len(str(n))
    lead = (str(n) + "".join(reversed(groups[-2:])))[:4]
    approx = approx or f"{lead[0]}.{lead[1:]}e+{digits - 1}"
    return f"{n},{','.join(reversed(groups))} (~{approx})"


def summarize(ir: IR) -> Summary:
    """The summary of a compiled (shaped, adapted) IR."""
    st = structure(ir)
    ops: dict[str, int] = {}
    for _, p in st.order:
        if isinstance(p, OpNode):
            ops[p.call.op] = ops.get(p.call.op, 0) + 1
    choices = st.choices
    keeps = [p for _, p in st.order if isinstance(p, CombineNode) and p.keep is not None]
    total = count_satisfying(ir, (), st)
    rules = []
    for r in ir.rules:
        n = count_satisfying(ir, (r,), st)
        status = "unsatisfiable" if n == 0 else "always met" if n == total else "ok"
        rules.append(RuleStatus(describe(r), str(r.span) if r.span else "", n, status))
    satisfying = count_satisfying(ir, ir.rules, st) if ir.rules else total
    cost = supernet_cost(ir)
    return Summary(
        space=ir.name, params=tuple(ir.params), nodes=ir.graph.number_of_nodes(),
        ops=tuple(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        choice_points=len(choices), alpha_keys=len({p.alpha for _, p in choices}),
        input_selections=len(keeps), select_keys=len({p.select for p in keeps}),
        sharing=tuple((k, len(rs)) for k, rs in reps(st).items()),
        adapters=tuple((a.node, a.candidate, a.reason) for a in adapter_infos(ir)),
        rules=tuple(rules), architectures=total, satisfying=satisfying,
        supernet_params=cost.params, supernet_macs=cost.macs)

