"""`dasc profile SPACE [--set K=V]... [--device cpu|cuda] [--batch B] [--repeats R]
[--clock wall|cpu] -o LATENCY.json`.

Times every distinct op of the space on this machine and writes the latency table that
hardware-aware search (`cost_kind = latency`, `budget`) and `derive --latency` read
(runtime/latency.py, runtime/profiler.py). The output path is checked before anything is
timed, and the table is written atomically. Torch is imported only inside `run`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from dasc.cli.common import (
    Context, add_set_option, add_space_argument, check_space_file, new_command,
)
from dasc.errors import UsageError


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "profile", help="measure per-op latency",
                    description="Time every candidate op of the space on a device and write a "
                                "latency table for hardware-aware search and derive.")
    add_space_argument(p)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch", type=int, default=64, metavar="B",
                   help="batch size the ops are timed at (default 64)")
    p.add_argument("--repeats", type=int, default=20, metavar="R",
                   help="timed runs per op after 3 warm-up runs; the median is kept (default 20)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: latency proper (default); cpu: process CPU time on one thread, "
                        "steady on a shared machine (CPU only)")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="LATENCY.json", required=True)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from dasc.cli.common import check_not_input
    from dasc.compiler.pipeline import compile_space
    from dasc.fsutil import atomic_write_json, check_output_path

    for flag, value in (("--batch", args.batch), ("--repeats", args.repeats)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}",
                             hint=f"e.g. {flag} {64 if flag == '--batch' else 20}")
    if args.clock == "cpu" and args.device != "cpu":
        raise UsageError("--clock cpu times CPU work; CUDA is always timed with events",
                         hint="drop --clock, or profile with --device cpu")
    check_output_path(args.output)
    check_not_input(args.output, args.space)
    check_space_file(args.space, ctx.sources)
    ir = compile_space(args.space, dict(args.overrides), ctx.sources)
    import torch

    from dasc.runtime.profiler import profile_space, slowest

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available",
                         hint="profile with --device cpu, or on the machine you will deploy to")
    started = time.perf_counter()
    table = profile_space(ir, args.device, args.batch, args.repeats, clock=args.clock)
    seconds = time.perf_counter() - started
    atomic_write_json(args.output, table)
    if ctx.json:
        ctx.emit_json({"output": args.output, "space": ir.name, "entries": len(table["entries"]),
                       "device": table["device"], "device_name": table["device_name"],
                       "batch": table["batch"], "repeats": table["repeats"],
                       "clock": table["clock"], "threads": table["threads"],
                       "fingerprint": table["fingerprint"], "seconds": round(seconds, 3)})
        return 0
    ctx.out(f"profiled {len(table['entries'])} distinct ops of {ir.name} on {table['device']} "
            f"({table['device_name']}), batch {table['batch']}, {table['repeats']} runs each "
            f"({table['clock']} clock, {table['threads']} thread(s)), in {seconds:.1f} s")
    ctx.out("  largest share of the super-network (median x uses):")
    for key, ms, uses in slowest(table):
        ctx.out(f"    {ms:9.4f} ms x {uses:<3} {key}")
    ctx.note(f"wrote {args.output}")
    return 0
