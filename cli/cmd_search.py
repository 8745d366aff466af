"""`dasc search SPACE --data digits ... -o RUN_DIR` and `dasc search --resume RUN_DIR`.

Bilevel (DARTS) search. The options below are the contract in DESIGN.md; `run` is a stub
until the runtime's search loop lands. Build a config dataclass from `args` here and hand it
to the runtime; import torch only inside `run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from dasc.cli.common import Context, add_set_option, new_command, not_implemented


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "search", help="run a differentiable architecture search",
                    description="Bilevel search of the space's architecture weights; the run "
                                "directory gets the α history, metrics, checkpoints, plots and "
                                "arch.json.")
    p.add_argument("space", metavar="SPACE", nargs="?", help="a .das file (not with --resume)")
    p.add_argument("--data", metavar="NAME", help="data set, e.g. digits")
    p.add_argument("--epochs", type=int, metavar="N")
    p.add_argument("--order", type=int, choices=[1, 2], help="first- or second-order DARTS")
    p.add_argument("--gate", choices=["softmax", "sigmoid", "gumbel"])
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--nproc", type=int, metavar="N", help="data-parallel processes")
    p.add_argument("--force", action="store_true", help="overwrite an existing RUN_DIR")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="the run directory to create")


def run(args: argparse.Namespace, ctx: Context) -> int:
    raise not_implemented("search")
