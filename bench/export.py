"""Derive + export time, and onnxruntime against eager PyTorch inference latency.

    python bench/export.py [--space spaces/digits.das] [--arch ARCH | --seed S] [--set K=V]...
                           [--batches 1,64] [--repeat 200] [--threads 1]

Prints one JSON object: the times to compile the space, derive (prune) the architecture, lower
it and export it (the export includes the checker and the onnxruntime parity check, as
`dasc export` runs them), the parity difference (a second export in the same process, `export_warm_s`, shows the
exporter's one-time start-up cost), and per batch size the median latency of one
forward pass in eager PyTorch (eval mode, no_grad) and in onnxruntime (CPUExecutionProvider),
each after warm-up runs, with the same number of threads for both. Without --arch a random
architecture of the space is drawn (seeded), so the figures are reproducible.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _median_ms(fn, repeat: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e3, 4)


def _overrides(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name.strip()] = int(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=str(Path(__file__).resolve().parent.parent
                                               / "spaces" / "digits.das"))
    parser.add_argument("--arch", help="arch.json path or text (default: a random architecture)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random architecture")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for both PyTorch and onnxruntime")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    import onnxruntime as ort
    import torch

    from dasc import __version__
    from dasc.compiler.arch import random_arch, read_arch
    from dasc.compiler.pipeline import compile_space
    from dasc.compiler.prune import prune
    from dasc.runtime.export import export_onnx
    from dasc.runtime.lower import lower
    from dasc.runtime.train import count_params, network_macs

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    space = compile_space(args.space, _overrides(args.set))
    t1 = time.perf_counter()
    arch = (read_arch(args.arch, space) if args.arch
            else random_arch(space, random.Random(args.seed)))
    derived = prune(space, arch)
    t2 = time.perf_counter()
    torch.manual_seed(0)
    gm = lower(derived).eval()
    t3 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        report = export_onnx(derived, gm, path, opset=args.opset,
                             meta={"space": space.name, "arch": arch.to_json(space.name)})
        t4 = time.perf_counter()
        export_onnx(derived, gm, path, opset=args.opset, meta={"space": space.name})
        warm_export = time.perf_counter() - t4
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    shape = derived.node(derived.input).shape
    latency = {}
    for batch in [int(b) for b in args.batches.split(",") if b]:
        x = torch.randn(batch, shape.c, shape.h, shape.w)
        feed = {report.input_name: x.numpy()}

        def eager() -> None:
            with torch.no_grad():
                gm(x)

        def onnx_rt() -> None:
            session.run(None, feed)

        with torch.no_grad():
            diff = float(np.abs(session.run(None, feed)[0] - gm(x).numpy()).max())
        torch_ms = _median_ms(eager, args.repeat, args.warmup)
        ort_ms = _median_ms(onnx_rt, args.repeat, args.warmup)
        latency[str(batch)] = {"torch_ms": torch_ms, "onnxruntime_ms": ort_ms,
                               "speedup": round(torch_ms / ort_ms, 3) if ort_ms else None,
                               "max_abs_diff": diff}

    macs, macs_method = network_macs(derived, gm)
    print(json.dumps({
        "space": space.name, "arch": arch.to_json(space.name),
        "seed": None if args.arch else args.seed,
        "params": count_params(gm), "macs": macs, "macs_method": macs_method,
        "compile_s": round(t1 - t0, 4), "derive_s": round(t2 - t1, 4),
        "lower_s": round(t3 - t2, 4), "export_s": round(t4 - t3, 4),
        "export_warm_s": round(warm_export, 4),
        "derive_export_s": round(t4 - t1, 4), "onnx_bytes": report.bytes,
        "onnx_nodes": report.nodes, "parity_max_abs_diff": report.max_abs_diff,
        "latency": latency, "repeat": args.repeat, "threads": args.threads,
        "machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": ort.__version__, "dasc": __version__},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
