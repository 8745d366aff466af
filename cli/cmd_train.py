"""`dasc train SPACE --arch ARCH --data digits [--epochs N] -o TRAIN_DIR`.

Train a derived network from scratch and report test accuracy. `run` is a stub until the
runtime's trainer lands; import torch only inside `run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from dasc.cli.common import (
    Context, add_set_option, add_space_argument, new_command, not_implemented,
)


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "train", help="train a derived network from scratch",
                    description="Train the network an architecture derives from the space and "
                                "report its test accuracy.")
    add_space_argument(p)
    p.add_argument("--arch", metavar="ARCH", required=True,
                   help="an arch.json, a DARTS genotype or a NAS-Bench-201 string "
                        "(literal or file)")
    p.add_argument("--data", metavar="NAME", required=True, help="data set, e.g. digits")
    p.add_argument("--epochs", type=int, metavar="N")
    p.add_argument("--device", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, metavar="S")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="TRAIN_DIR", required=True)


def run(args: argparse.Namespace, ctx: Context) -> int:
    raise not_implemented("train")
