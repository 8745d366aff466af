"""`dasc derive SPACE --arch ARCH|--run RUN_DIR [--set K=V]... [--format ...] [--latency T]`.

Discretize (respecting constraints) and report the derived network: choices, parameters, MACs.
With `--run`, the run's final gate weights are discretized by the compiler's exact pass (the
same one `dasc search` used for its arch.json). Torch is not imported unless `--latency` asks
for the derived network to be timed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dasc.cli.common import (
    Context, add_set_option, add_space_argument, check_not_input, check_run_overrides,
    check_space_file, new_command,
)
from dasc.errors import Span, UsageError


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "derive", help="discretize and report a derived network",
                    description="Discretize a run's weights (or read an architecture), "
                                "respecting the space's constraints, and report the network.")
    add_space_argument(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", metavar="ARCH",
                       help="an arch.json, a DARTS genotype or a NAS-Bench-201 string "
                            "(literal or file)")
    which.add_argument("--run", metavar="RUN_DIR", help="a search run directory")
    add_set_option(p)
    p.add_argument("--format", choices=["json", "darts", "nb201"], default="json",
                   help="how to print the architecture")
    p.add_argument("--latency", metavar="TABLE", help="a latency table from dasc profile")
    p.add_argument("-o", "--output", metavar="ARCH.json", help="also write the arch.json")


def arch_from_run(ir, run_dir: str):
    """The run's last gate weights, discretized exactly as `dasc search` did."""
    from dasc.compiler.discretize import discretize
    from dasc.runtime.rundir import read_json

    run = Path(run_dir)
    if not (run / "config.json").is_file():
        raise UsageError(f"{run_dir} is not a dasc run directory (no config.json)",
                         Span.of_file(run_dir), "pass the RUN_DIR that `dasc search -o` created")
    history = read_json(run / "alpha_history.json")
    config = read_json(run / "config.json")
    if not isinstance(history, list) or not history or "weights" not in history[-1]:
        raise UsageError(f"{run_dir} has no finished epoch yet", Span.of_file(run_dir),
                         f"let the search run an epoch (dasc search --resume {run_dir})")
    cfg = config.get("config", {}) if isinstance(config, dict) else {}
    mode = "sigmoid" if cfg.get("gate") == "sigmoid" else "darts"
    arch = discretize(ir, history[-1]["weights"], mode=mode,
                      threshold=float(cfg.get("threshold", 0.5)), budget=_run_budget(ir, cfg))
    check_run_overrides(ir, run_dir, config)  # after: a run of another space fails on its α keys
    return arch


def _run_budget(ir, cfg: dict):
    """The hard budget the run was searched under (`budget = N`), applied the same way."""
    from types import SimpleNamespace

    from dasc.runtime.latency import budget_rule

    return budget_rule(ir, SimpleNamespace(budget=float(cfg.get("budget") or 0),
                                           cost_kind=cfg.get("cost_kind", "macs"),
                                           latency_table=cfg.get("latency_table", "")))


def report(ir, arch) -> dict[str, Any]:
    """What `derive --json` prints: the choices, the derived network's params and MACs."""
    from dasc.compiler.constraints import violations
    from dasc.compiler.cost import arch_cost

    cost = arch_cost(ir, arch)
    return {"space": ir.name, "params": cost.params, "macs": cost.macs,
            "arch": arch.to_json(ir.name), "violations": list(violations(ir, arch))}


def run(args: argparse.Namespace, ctx: Context) -> int:
    from dasc.compiler.arch import read_arch
    from dasc.compiler.pipeline import compile_space
    from dasc.fsutil import atomic_write_json, check_output_path

    if args.output:
        check_output_path(args.output)
        # `-o space.das` or `-o latency.json` would replace an input with the arch.json
        check_not_input(args.output, args.space,
                        *[given for given in (args.arch, args.latency) if given])
    check_space_file(args.space, ctx.sources)
    ir = compile_space(args.space, dict(args.overrides), ctx.sources)
    arch = arch_from_run(ir, args.run) if args.run else read_arch(args.arch, ir)
    data = report(ir, arch)
    if args.format != "json":
        from dasc.compiler import archstrings

        data["string"] = archstrings.format_arch(ir, arch, args.format)
    if args.latency:
        from dasc.runtime.latency import latency_report

        data["latency"] = latency_report(ir, arch, args.latency)
    if args.output:
        atomic_write_json(args.output, arch.to_json(ir.name))
    if ctx.json:
        ctx.emit_json(data)
        return 0
    if args.format != "json":
        ctx.out(data["string"])
        return 0
    ctx.out(f"derived network of {ir.name}: {data['params']:,} parameters, "
            f"{data['macs']:,} MACs")
    for key, op in data["arch"]["choices"].items():
        ctx.out(f"  {key:<40} {op}")
    for key, kept in data["arch"]["keeps"].items():
        ctx.out(f"  {key:<40} keeps inputs {', '.join(str(k) for k in kept)}")
    for v in data["violations"]:
        ctx.out(f"  violates: {v}")
    if "latency" in data:
        lat = data["latency"]
        ctx.out(f"  latency: predicted {lat['predicted_ms']:.3f} ms, measured "
                f"{lat['measured_ms']:.3f} ms, gap {lat['gap_ms']:+.3f} ms "
                f"({lat['gap_pct']:+.1f}% of measured) on {lat['device']} "
                f"({lat['device_name']}), batch {lat['batch']}")
    return 0
