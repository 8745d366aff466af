"""The interpreter's environment: module-level definitions and one frame per body being run.

Names live in three namespaces, as the language reads: values (integers and tensors: variables,
parameters, the input), op sets (`choice(SET, x)`), and callables (built-in ops, composite ops,
cells, `sum`/`concat`/`min`/`max`). Bodies see the module's parameters and op sets plus their
own locals; only the network body sees the input tensor, so cells and ops are closed over
their arguments (a cell cannot reach around its inputs into the network).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

from dasc.dsl import ast
from dasc.errors import Span
from dasc.compiler.values import IdPool, Naming, OpSet, Tensor, Value

if TYPE_CHECKING:  # pragma: no cover
    from dasc.compiler.emit import BlockTarget, GraphTarget

LANGUAGE_CALLS = ("sum", "concat", "min", "max", "choice")


@dataclass
class Globals:
    """Module-level definitions, filled in declaration order by `compiler.expand`."""

    params: dict[str, int] = field(default_factory=dict)
    opsets: dict[str, OpSet] = field(default_factory=dict)
    ops: dict[str, ast.OpDecl] = field(default_factory=dict)
    cells: dict[str, ast.CellDecl] = field(default_factory=dict)
    input_name: str | None = None


@dataclass(frozen=True)
class RegionCtx:
    """The decision region a body's choices belong to: its id and α sharing key prefix."""

    id: str
    key: str

    def alpha(self, local: str) -> str:
        return f"{self.key}.{local}"


Target = Union["GraphTarget", "BlockTarget", None]


@dataclass
class Frame:
    """One running body: a network, a cell instance, a composite op instance, or module level.

    `kind` is "module" (parameter and constraint expressions: integers only), "network",
    "cell" or "op". `prefix` starts the ids of the nodes its statements create; `scope` is the
    enclosing cell instance ("" outside cells). `stack` lists the composite ops and cells being
    expanded, to report recursion instead of overflowing Python's stack. `ret_base` is the id
    reserved for the value a composite op returns (None: name it after its op).
    """

    kind: str
    name: str
    vars: dict[str, Value]
    target: Target
    pool: IdPool
    prefix: str = ""
    scope: str = ""
    region: RegionCtx | None = None
    group: str = ""
    stack: tuple[str, ...] = ()
    ret_base: str | None = None
    opsets: dict[str, OpSet] = field(default_factory=dict)
    result: Value | None = None
    result_span: Span | None = None

    def base(self, var: str) -> Naming:
        """Naming for a statement assigning `var`: the value node is `<prefix>.<var>`."""
        return Naming.planned(self.pool, f"{self.prefix}.{var}" if self.prefix else var)

    def return_naming(self) -> Naming:
        """Naming for `return e`: a cell's value is `<cell instance>.out`, the network's `out`,
        a composite op's the id its caller reserved."""
        if self.kind == "op":
            return Naming(self.pool, self.ret_base, reserved=True)
        if self.kind == "cell":
            return Naming.planned(self.pool, f"{self.scope}.out")
        return Naming.planned(self.pool, "out")

    def tensor_params(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.vars.items() if isinstance(v, Tensor)}
