"""The op registry. Importing `dasc.ops` registers every built-in op in `REGISTRY`.

No torch here: the family modules only hold shape and cost rules; their builders import
`dasc.runtime.layers` when a module is actually built.
"""

from dasc.ops.registry import (  # noqa: F401
    REGISTRY, OpShapeIssue, OpSpec, ParamSpec, Registry, Shape, Style, check_args, infer_shape,
    resolve_args,
)
from dasc.ops import basic, combine, darts, mobile, nb201, pooling  # noqa: F401,E402

__all__ = ["REGISTRY", "OpShapeIssue", "OpSpec", "ParamSpec", "Registry", "Shape", "Style",
           "check_args", "infer_shape", "resolve_args"]
