"""`dasc profile SPACE [--device cpu|cuda] -o latency.json`: a measured per-op latency table.

`run` is a stub until the runtime's profiler lands; import torch only inside `run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from dasc.cli.common import (
    Context, add_set_option, add_space_argument, new_command, not_implemented,
)


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "profile", help="measure per-op latency",
                    description="Time every candidate op of the space on a device and write a "
                                "latency table for hardware-aware search and derive.")
    add_space_argument(p)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="LATENCY.json", required=True)


def run(args: argparse.Namespace, ctx: Context) -> int:
    raise not_implemented("profile")
