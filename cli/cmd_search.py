"""`dasc search SPACE --data digits ... -o RUN_DIR` and `dasc search --resume RUN_DIR`.

Builds a `SearchRequest` from the flags (flags override the space's `search { }` defaults) and
hands it to the runtime; torch is imported only inside `run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dasc.cli.common import Context, add_set_option, check_nproc, check_space_file, new_command
from dasc.errors import UsageError

# flag -> SearchConfig field, for the flags that override a setting
_SETTING_FLAGS = ("epochs", "order", "gate", "device", "seed", "batch_size", "schedule", "tau",
                  "tau_end", "l1", "entropy", "cost", "cost_kind", "partial_channels",
                  "arch_lr", "w_lr", "checkpoint", "latency_table", "cost_form", "cost_target",
                  "cost_beta", "budget")


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "search", help="run a differentiable architecture search",
                    description="Bilevel search of the space's architecture weights; the run "
                                "directory gets the α history, metrics, checkpoints, plots and "
                                "arch.json.")
    p.add_argument("space", metavar="SPACE", nargs="?", help="a .das file (not with --resume)")
    p.add_argument("--data", metavar="NAME", help="digits (bundled) or a .npz file")
    p.add_argument("--epochs", type=int, metavar="N")
    p.add_argument("--order", type=int, choices=[1, 2], help="first- or second-order DARTS")
    p.add_argument("--gate", choices=["softmax", "sigmoid", "gumbel", "gumbel_hard"])
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--batch-size", type=int, metavar="B")
    p.add_argument("--schedule", choices=["constant", "linear", "exponential", "cosine"],
                   help="temperature schedule from --tau to --tau-end")
    p.add_argument("--tau", type=float, metavar="T", help="initial gate temperature")
    p.add_argument("--tau-end", type=float, metavar="T", help="final gate temperature")
    p.add_argument("--l1", type=float, metavar="W", help="L1 weight on the gate weights")
    p.add_argument("--entropy", type=float, metavar="W", help="entropy weight on each choice")
    p.add_argument("--cost", type=float, metavar="LAMBDA", help="expected-cost penalty weight")
    p.add_argument("--cost-kind", choices=["params", "macs", "latency"])
    p.add_argument("--latency-table", metavar="TABLE", help="a table from dasc profile (cost_kind latency)")
    p.add_argument("--cost-form", choices=["additive", "multiplicative"],
                   help="λ·E[cost] or loss·(E[cost]/target)^β (ProxylessNAS)")
    p.add_argument("--cost-target", type=float, metavar="T", help="target of the multiplicative form")
    p.add_argument("--cost-beta", type=float, metavar="B", help="exponent of the multiplicative form")
    p.add_argument("--budget", type=float, metavar="N",
                   help="hard budget in the cost unit: discretization never exceeds it")
    p.add_argument("--partial-channels", type=int, metavar="K", help="PC-DARTS: 1/K channels mixed")
    p.add_argument("--arch-lr", type=float, metavar="LR")
    p.add_argument("--w-lr", type=float, metavar="LR")
    p.add_argument("--checkpoint", type=int, choices=[0, 1],
                   help="recompute mixed ops in backward to save memory (1) or not (0)")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel worker processes (global batch split over them)")
    p.add_argument("--sync-bn", action="store_true",
                   help="with --nproc: batch-norm statistics over the global batch, not per process")
    p.add_argument("--force", action="store_true", help="replace an existing RUN_DIR")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="the run directory to create")


def run(args: argparse.Namespace, ctx: Context) -> int:
    from dasc.runtime.driver import prints_result, run_search
    from dasc.runtime.run_record import SearchRequest, request_from_run_dir

    check_nproc(args.nproc)
    if args.resume:
        if args.space or args.output:
            raise UsageError("--resume takes the space and settings from the run directory",
                             hint=f"run just: dasc search --resume {args.resume}")
        request, space_text = request_from_run_dir(args.resume,
                                                   progress=not (args.quiet or ctx.json))
        if args.nproc is not None:  # checkpoints resume on any number of processes
            request = _replace(request, nproc=args.nproc)
        check_nproc(request.nproc)  # the stored one too: a hand-edited config.json is input
        if args.sync_bn and not request.sync_bn:
            raise UsageError(f"the search in {args.resume} was started without --sync-bn; a "
                             "resumed run keeps the settings it started with",
                             hint=f"resume without it: dasc search --resume {args.resume}")
        _use_space_copy(request.space, space_text, args.resume, ctx)
        summary = run_search(request, ctx.sources, resume=True)
    else:
        if not args.space:
            raise UsageError("dasc search needs a SPACE file (or --resume RUN_DIR)",
                             hint="e.g. dasc search spaces/digits.das --data digits -o run1")
        if not args.output:
            raise UsageError("dasc search needs -o RUN_DIR", hint="e.g. -o runs/digits1")
        check_space_file(args.space, ctx.sources)
        settings = {flag: getattr(args, flag) for flag in _SETTING_FLAGS
                    if getattr(args, flag, None) is not None}
        request = SearchRequest(args.space, args.data or "digits", args.output,
                                dict(args.overrides), settings, args.force, args.nproc or 1,
                                not (args.quiet or ctx.json), bool(args.sync_bn))
        summary = run_search(request, ctx.sources)
    if not prints_result():  # another rank, or a worker whose --nproc parent prints
        return 0
    if ctx.json:
        ctx.emit_json(summary)
    else:
        ctx.out(_human(summary))
    return 0


def _use_space_copy(space: str, copy: str | None, run_dir: str, ctx: Context) -> None:
    """Resume the space text the search started with (RUN_DIR/space.das), under SPACE's name
    so that includes still resolve beside it; a run from before the copy reads SPACE again."""
    from dasc.runtime.driver import prints_result

    if copy is None:
        check_space_file(space, ctx.sources)
        return
    if Path(space).is_file() and prints_result():
        try:
            edited = Path(space).read_text(encoding="utf-8") != copy
        except (OSError, UnicodeDecodeError):
            edited = True
        if edited:
            ctx.note(f"note: {space} has changed since the search started; resuming with the "
                     f"copy in {Path(run_dir) / 'space.das'}")
    ctx.sources.add(space, copy)


def _replace(request, **changes):
    from dataclasses import replace

    return replace(request, **changes)


def _human(s: dict) -> str:
    return "\n".join([
        f"search of {s['space']} finished after {s['epochs']} epochs "
        f"({s.get('processes', 1)} process{'es' if s.get('processes', 1) != 1 else ''})",
        f"  supernet test accuracy           {s['supernet_test_acc']:.4f}",
        f"  derived network, inherited w     {s['derived_test_acc_inherited']:.4f}"
        f"  (BN recalibrated; raw {s['derived_test_acc_inherited_raw_bn']:.4f})",
        f"  discretization gap               {s['discretization_gap']:+.4f}",
        f"  architecture                     {s['arch']}",
        f"  run directory                    {s['run_dir']}",
    ])
