"""Skip-connection collapse, shown: unconstrained DARTS on NAS-Bench-201 versus a path constraint.

    python bench/collapse.py [--epochs 20] [--seeds 0 1] [--json]

Runs short first-order searches of the NAS-Bench-201 space on the bundled digits (input set to
1×8×8, a small C and one cell per stage so it runs on a CPU), and after every epoch discretizes
the α learnt so far twice: as DARTS does (argmax per edge), and under `constraint paths in
nb201 >= 1` (every input→output path of the cell keeps a non-skip op), with dasc's exact
constrained discretization. It prints, per epoch, how many of the cell's 6 edges hold
parameter-free ops (skip_connect, pooling, none) in each derived cell.

The constraint acts at discretization only (the search itself is the same), so both columns
come from the same α trajectory: the difference is exactly what the constraint changes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PARAM_FREE = {"skip_connect", "avg_pool_3x3", "max_pool_3x3", "none"}
SETTINGS = {"channels": 1, "size": 8, "C": 8, "N": 1}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--arch-lr", type=float, default=3e-3)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def constrained_space(directory: Path) -> Path:
    """nb201.das plus the path constraint, through an include (the space itself is unchanged)."""
    path = directory / "nb201_constrained.das"
    path.write_text(f'include "{REPO / "spaces" / "nb201.das"}"\n\n'
                    "constraint paths in nb201 >= 1\n", encoding="utf-8")
    return path


def census(arch) -> dict[str, int]:
    ops = [op for _, op in arch.choices]
    return {"param_free": sum(op in PARAM_FREE for op in ops),
            "skip": ops.count("skip_connect"), "none": ops.count("none"),
            "pool": sum(op.endswith("pool_3x3") for op in ops)}


def run_seed(seed: int, epochs: int, arch_lr: float, work: Path) -> list[dict]:
    import torch

    from dasc.compiler.discretize import discretize
    from dasc.compiler.pipeline import compile_space
    from dasc.errors import Sources
    from dasc.runtime.driver import SearchRequest, run_search
    from dasc.runtime.rundir import read_json

    torch.set_num_threads(1)
    free_ir = compile_space(str(REPO / "spaces" / "nb201.das"), SETTINGS, Sources())
    rule_ir = compile_space(str(constrained_space(work)), SETTINGS, Sources())
    run = work / f"run{seed}"
    request = SearchRequest(str(REPO / "spaces" / "nb201.das"), "digits", str(run), dict(SETTINGS),
                            {"epochs": epochs, "seed": seed, "arch_lr": arch_lr, "w_lr": 0.05,
                             "batch_size": 32}, progress=False)
    run_search(request, Sources())
    rows = []
    for record in read_json(run / "alpha_history.json"):
        rows.append({"seed": seed, "epoch": record["epoch"],
                     "darts": census(discretize(free_ir, record["weights"])),
                     "constrained": census(discretize(rule_ir, record["weights"]))})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for seed in args.seeds for row in run_seed(seed, args.epochs, args.arch_lr, Path(tmp))]
    result = {"command": "python bench/collapse.py " + " ".join(sys.argv[1:]),
              "settings": SETTINGS, "epochs": args.epochs, "seeds": args.seeds,
              "machine": platform.platform(), "seconds": round(time.time() - started, 1),
              "rows": rows}
    if args.json:
        print(json.dumps(result))
        return 0
    print("epoch  seed  parameter-free ops of 6 (skip/pool/none): DARTS argmax | path >= 1")
    for r in rows:
        d, c = r["darts"], r["constrained"]
        print(f"{r['epoch']:>5}  {r['seed']:>4}  {d['param_free']} ({d['skip']}/{d['pool']}/{d['none']})"
              f"{'':>12}| {c['param_free']} ({c['skip']}/{c['pool']}/{c['none']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
