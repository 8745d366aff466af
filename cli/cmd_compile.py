"""`dasc compile SPACE [--set K=V]... [-o ir.json] [--emit fx]`: parse, check, summarize.

The front-end command: it must stay fast and must not import torch (only `--emit fx`, which
generates torch.fx code, loads the runtime). The compiler modules are imported inside `run`
so that `dasc --help` and the other commands do not pay for them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from dasc.cli.common import (
    Context, add_set_option, add_space_argument, check_not_input, check_space_file, new_command,
    require,
)
from dasc.fsutil import atomic_write_json, check_output_path


@dataclass(frozen=True)
class CompileConfig:
    space: str
    overrides: Mapping[str, int] = field(default_factory=dict)
    output: str | None = None
    emit: str | None = None


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "compile", help="parse, check and summarize a space",
                    description="Parse and check a space, then print a summary: ops, choice "
                                "points, adapters inserted, constraint status, the number of "
                                "architectures and the supernet's parameters.")
    add_space_argument(p)
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="IR.json", help="also write the IR as JSON")
    p.add_argument("--emit", choices=["fx"],
                   help="print generated code instead of the summary (fx: the supernet's "
                        "torch.fx code)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    cfg = CompileConfig(space=args.space, overrides=dict(args.overrides), output=args.output,
                        emit=args.emit)
    return compile_command(cfg, ctx)


def summary_dict(summary: Any) -> dict[str, Any]:
    """`Summary.to_json()` as a dict, whether it returns a dict or JSON text."""
    data = summary.to_json()
    return json.loads(data) if isinstance(data, str) else dict(data)


def compile_command(cfg: CompileConfig, ctx: Context) -> int:
    if cfg.output is not None:
        check_output_path(cfg.output)  # fail before the work, not after
        check_not_input(cfg.output, cfg.space)
    check_space_file(cfg.space, ctx.sources)
    compile_space = require("dasc.compiler.pipeline", "compile_space", "dasc compile")
    ir = compile_space(cfg.space, cfg.overrides, ctx.sources)

    if cfg.output is not None:  # written before printing, so a failed write prints no result
        dump = require("dasc.compiler.serialize", "dump", "dasc compile -o")
        atomic_write_json(cfg.output, dump(ir))
        if not ctx.json:
            ctx.note(f"wrote the IR to {cfg.output}")

    if cfg.emit == "fx":
        emit_fx_code = require("dasc.runtime.lower", "emit_fx_code", "dasc compile --emit fx")
        code = emit_fx_code(ir)
        if ctx.json:
            ctx.emit_json({"space": ir.name, "fx": code})
        else:
            ctx.out(code.rstrip("\n"))
    else:
        summarize = require("dasc.compiler.summary", "summarize", "dasc compile")
        summary = summarize(ir)
        if ctx.json:
            data = summary_dict(summary)
            if cfg.output is not None:
                data["ir_file"] = cfg.output
            ctx.emit_json(data)
        else:
            ctx.out(summary.to_text().rstrip("\n"))
    return 0
