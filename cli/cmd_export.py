"""`dasc export SPACE --arch ARCH [--weights CKPT] -o model.onnx`.

ONNX that passes `onnx.checker.check_model(full_check=True)` and matches PyTorch in
onnxruntime; both are checked before the file is written, and a failed check leaves no file.
torch is imported only inside `run`.
"""

from __future__ import annotations

import argparse
from typing import Any

from dasc import __version__
from dasc.cli.common import (
    Context, add_set_option, add_space_argument, check_not_input, check_space_file, new_command,
)
from dasc.errors import UsageError
from dasc.fsutil import check_output_path


def register(subparsers: Any) -> None:
    p = new_command(subparsers, "export", help="export a derived network to ONNX",
                    description="Export the network an architecture derives from the space as "
                                "ONNX, with trained weights if given.")
    add_space_argument(p)
    p.add_argument("--arch", metavar="ARCH", required=True,
                   help="an arch.json, a DARTS genotype or a NAS-Bench-201 string "
                        "(literal or file)")
    p.add_argument("--weights", metavar="CKPT",
                   help="a checkpoint from dasc train (best.pt / TRAIN_DIR) or a search run's "
                        "supernet checkpoint (inherited weights)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    add_set_option(p)
    p.add_argument("-o", "--output", metavar="MODEL.onnx", required=True)


def run(args: argparse.Namespace, ctx: Context) -> int:
    check_output_path(args.output)  # a typo in -o fails before compiling and exporting
    # `-o best.pt` or `-o space.das` would replace a trained checkpoint or the space with ONNX
    check_not_input(args.output, args.space, args.arch, *([args.weights] if args.weights else []))
    import torch

    # the TorchScript exporter's range; outside it torch fails deep inside the export
    low, high = _opset_range()
    if not low <= args.opset <= high:
        raise UsageError(f"--opset {args.opset} is not supported: the exporter writes ONNX opsets "
                         f"{low} to {high}", hint="leave out --opset for the default, 17")
    check_space_file(args.space, ctx.sources)

    from dasc.compiler.arch import read_arch
    from dasc.compiler.pipeline import compile_space
    from dasc.compiler.prune import prune
    from dasc.runtime.export import export_onnx
    from dasc.runtime.lower import lower

    ir = compile_space(args.space, args.overrides, ctx.sources)
    arch = read_arch(args.arch, ir)
    derived = prune(ir, arch)
    torch.manual_seed(0)  # without --weights: the same initial weights on every export
    gm = lower(derived)
    weights = None
    if args.weights:
        from dasc.runtime.inherit import load_weights

        state, weights = load_weights(args.weights, ir, derived, arch, gm.state_dict())
        gm.load_state_dict(state)
    meta = {"space": ir.name, "arch": arch.to_json(ir.name), "overrides": dict(args.overrides),
            "weights": "none" if weights is None else weights["source"],
            "dasc_version": __version__}
    report = export_onnx(derived, gm, args.output, opset=args.opset, meta=meta)
    if ctx.json:
        ctx.emit_json({"space": ir.name, **report.to_json(), "weights": weights})
        return 0
    diffs = ", ".join(f"batch {b}: {d:.2g}" for b, d in report.diffs.items())
    ctx.out(f"wrote {report.path} ({report.nodes} nodes, {report.bytes:,} bytes, opset "
            f"{report.opset})")
    ctx.out(f"onnx.checker (full_check) passed; onnxruntime vs PyTorch max |diff| "
            f"{report.max_abs_diff:.2g} ({diffs})")
    if weights is None:
        ctx.note("note: exported with freshly initialised weights (pass --weights best.pt)")
    else:
        ctx.out(f"weights from {weights['source']} checkpoint {weights['weights']}"
                + (f" ({weights['fresh']} tensors without a supernet counterpart left fresh)"
                   if weights["fresh"] else ""))
    return 0


def _opset_range() -> tuple[int, int]:
    """The opsets torch's TorchScript exporter writes; `_constants` is private, so a torch
    without it gets the range of the torch versions dasc was tested with (7..20)."""
    try:
        from torch.onnx import _constants as limits

        return (int(limits.ONNX_MIN_OPSET),
                int(getattr(limits, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", limits.ONNX_MAX_OPSET)))
    except (ImportError, AttributeError):
        return 7, 20
