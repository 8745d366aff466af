"""The compiler stage: AST -> IR, then passes (shapes, adapters) checked by a verifier.

The entry points are re-exported lazily (PEP 562), so `import dasc.compiler.ir` from a pass
does not drag in the whole pipeline, and importing the package stays cheap:

    from dasc.compiler import compile_space
    ir = compile_space("spaces/darts.das", {"C": 16})

`compile_space`/`compile_module` (pipeline.py), `infer_shapes` (shapes.py),
`insert_adapters` (adapters.py), `VerifyError` (verify.py), `dump`/`load` (serialize.py),
`IR`/`ir_equal` (ir.py). `expand` and `verify` share their module's name, so import them
from `dasc.compiler.expand` / `dasc.compiler.verify`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compile_space": "pipeline", "compile_module": "pipeline",
    "infer_shapes": "shapes", "insert_adapters": "adapters", "VerifyError": "verify",
    "dump": "serialize", "load": "serialize",
    "IR": "ir", "ir_equal": "ir",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dasc.compiler' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dasc.compiler.{module}"), name)
