"""`dasc render SPACE [--arch ARCH | --run RUN_DIR] [--set K=V]... -o FILE.{svg,png,pdf,gv}`.

The DOT text comes from `compiler/dot.py`; images are made by Graphviz's real `dot` binary in a
subprocess with a timeout (a huge space must not hang the command). `.gv` writes the DOT text
itself and needs no Graphviz. Everything that can be checked before compiling (the extension,
the output directory) is checked first. `DASC_DOT` may name the `dot` binary to use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dasc.cli.common import (
    Context, add_set_option, add_space_argument, check_not_input, check_run_overrides,
    check_space_file, new_command, require,
)
from dasc.errors import DascError, UsageError
from dasc.fsutil import atomic_write_bytes, atomic_write_text, check_output_path

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".gv": "gv", ".dot": "gv"}
DOT_TIMEOUT_S = 120


@dataclass(frozen=True)
class RenderConfig:
    space: str
    output: str
    fmt: str
    overrides: Mapping[str, int] = field(default_factory=dict)
    arch: str | None = None
    run_dir: str | None = None
    timeout_s: float = DOT_TIMEOUT_S


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "render", help="draw a space, a run's weights or an architecture",
                    description="Draw the space with Graphviz: cells as clusters, adapters "
                                "marked; with --run the weights of a search as edge strength; "
                                "with --arch only the chosen ops.")
    add_space_argument(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--arch", metavar="ARCH",
                       help="an arch.json, a DARTS genotype or a NAS-Bench-201 string "
                            "(literal or file)")
    which.add_argument("--run", metavar="RUN_DIR", help="a search run directory")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="FILE", required=True,
                   help="output file: .svg, .png, .pdf, or .gv (DOT text, no Graphviz needed)")


def output_format(path: str) -> str:
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        what = f"unknown extension '{ext}'" if ext else "no file extension"
        raise UsageError(f"cannot render to '{path}': {what}",
                         hint="use one of .svg, .png, .pdf, .gv")
    return FORMATS[ext]


def run(args: argparse.Namespace, ctx: Context) -> int:
    cfg = RenderConfig(space=args.space, output=args.output, fmt=output_format(args.output),
                       overrides=dict(args.overrides), arch=args.arch, run_dir=args.run)
    return render_command(cfg, ctx)


def render_command(cfg: RenderConfig, ctx: Context) -> int:
    check_output_path(cfg.output)
    check_not_input(cfg.output, cfg.space, *([cfg.arch] if cfg.arch else []))
    dot_binary = find_dot() if cfg.fmt != "gv" else None  # before the compile, to fail fast
    check_space_file(cfg.space, ctx.sources)
    compile_space = require("dasc.compiler.pipeline", "compile_space", "dasc render")
    ir = compile_space(cfg.space, cfg.overrides, ctx.sources)

    arch = alpha = None
    if cfg.arch is not None:
        read_arch = require("dasc.compiler.arch", "read_arch", "dasc render --arch")
        arch = read_arch(cfg.arch, ir)
    elif cfg.run_dir is not None:
        alpha = read_run_alpha(cfg.run_dir)

    from dasc.compiler.dot import to_dot

    text = to_dot(ir, arch=arch, alpha=alpha)
    if cfg.run_dir is not None:  # after to_dot: a run of another space fails on its α keys
        check_run_overrides(ir, cfg.run_dir)
    if cfg.fmt == "gv":
        atomic_write_text(cfg.output, text)
        size = len(text.encode("utf-8"))
    else:
        data = run_dot(dot_binary, text, cfg.fmt, cfg.timeout_s)
        atomic_write_bytes(cfg.output, data)
        size = len(data)
    if ctx.json:
        ctx.emit_json({"space": ir.name, "output": cfg.output, "format": cfg.fmt,
                       "bytes": size, "view": "arch" if arch is not None else
                       "alpha" if alpha is not None else "space"})
    else:
        ctx.note(f"wrote {cfg.output}")
    return 0


def read_run_alpha(run_dir: str) -> dict[str, list[float]]:
    """The newest gate weights of a search run: the last entry of `alpha_history.json`.

    That file (written by `dasc search` after every epoch) is a list of
    `{"epoch": n, "weights": {alpha_key: [w, ...]}}`; reading the JSON rather than a torch
    checkpoint keeps `render` free of torch.
    """
    path = Path(run_dir) / "alpha_history.json"
    if not Path(run_dir).is_dir():
        raise UsageError(f"no such run directory: '{run_dir}'",
                         hint="give the -o directory of a dasc search run")
    if not path.is_file():
        raise UsageError(f"'{run_dir}' has no alpha_history.json",
                         hint="give the directory of a dasc search run that finished at "
                              "least one epoch")
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
        weights = history[-1]["weights"]
        alpha = {str(k): [float(x) for x in v] for k, v in weights.items()}
    except (OSError, UnicodeDecodeError, ValueError, LookupError, TypeError,
            AttributeError, RecursionError) as exc:
        raise UsageError(f"cannot read the weights in {path}: {exc}",
                         hint="the run directory may be damaged; re-run the search with "
                              "--resume or --force") from None
    return alpha


def find_dot() -> str:
    """The Graphviz binary: `$DASC_DOT` if set, else `dot` on PATH."""
    explicit = os.environ.get("DASC_DOT")
    found = shutil.which(explicit or "dot")
    if found is None:
        what = f"DASC_DOT={explicit}" if explicit else "Graphviz's 'dot'"
        raise UsageError(f"cannot render images: {what} was not found",
                         hint="install Graphviz (apt-get install graphviz), or write DOT text "
                              "with -o FILE.gv")
    return found


def run_dot(binary: str | None, text: str, fmt: str, timeout_s: float) -> bytes:
    """Run `dot -T<fmt>` on `text`; a failure or a timeout is a clear error, not a traceback."""
    assert binary is not None
    try:
        proc = subprocess.run([binary, f"-T{fmt}"], input=text.encode("utf-8"),
                              capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise DascError(f"Graphviz took longer than {timeout_s:g}s and was stopped",
                        hint="render a derived architecture (--arch) or a smaller space "
                             "(--set), or write DOT text with -o FILE.gv") from None
    except OSError as exc:
        raise UsageError(f"cannot run Graphviz ({binary}): {exc.strerror or exc}",
                         hint="check the Graphviz installation, or write -o FILE.gv") from None
    if proc.returncode != 0 or not proc.stdout:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        first = detail[0] if detail else f"exit status {proc.returncode}"
        raise DascError(f"Graphviz failed to render {fmt}: {first}",
                        hint="write DOT text with -o FILE.gv to inspect it; if it is valid "
                             "DOT, check the Graphviz installation")
    return proc.stdout
