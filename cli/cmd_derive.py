"""`dasc derive SPACE --arch ARCH|--run RUN_DIR [--set K=V]... [--format ...] [--latency T]`.

Discretize (respecting constraints) and report the derived network: choices, parameters, MACs,
and predicted/measured latency with a table. `run` is a stub until `compiler/discretize.py`,
`compiler/arch.py` and `compiler/cost.py` land; `--json` must include "params" and "macs".
"""

from __future__ import annotations

import argparse
from typing import Any

from dasc.cli.common import (
    Context, add_set_option, add_space_argument, new_command, not_implemented,
)


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


def run(args: argparse.Namespace, ctx: Context) -> int:
    raise not_implemented("derive")
