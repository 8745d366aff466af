"""`dasc export SPACE --arch ARCH [--weights CKPT] -o model.onnx`.

ONNX that passes `onnx.checker.check_model(full_check=True)` and matches PyTorch in
onnxruntime. `run` is a stub until `runtime/export.py` lands; import torch only inside `run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from dasc.cli.common import (
    Context, add_set_option, add_space_argument, new_command, not_implemented,
)


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "export", help="export a derived network to ONNX",
                    description="Export the network an architecture derives from the space as "
                                "ONNX, with trained weights if given.")
    add_space_argument(p)
    p.add_argument("--arch", metavar="ARCH", required=True,
                   help="an arch.json, a DARTS genotype or a NAS-Bench-201 string "
                        "(literal or file)")
    p.add_argument("--weights", metavar="CKPT", help="a checkpoint from dasc train")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="MODEL.onnx", required=True)


def run(args: argparse.Namespace, ctx: Context) -> int:
    raise not_implemented("export")
