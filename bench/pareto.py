"""The accuracy-latency trade-off of hardware-aware search on digits: one search per λ.

    python bench/pareto.py [--space spaces/digits.das] [--set K=V]... [--lambdas 0,0.1,0.3,1]
                           [--budgets 6,5] [--epochs 3] [--cost-kind latency|macs|params]
                           [--table latency.json] [--clock cpu|wall] [--train-epochs 0]
                           [--seed 0] [--out out/pareto] [--json]

Profiles the space (unless --table is given), then runs a short search per λ (additive
penalty λ·E[cost]) and per hard budget, all from the same seed, and reports for each derived
network its predicted latency (the table's sum over its ops), MACs, parameters and accuracy:
the inherited-weight test accuracy after BN recalibration (what `dasc search` reports), and,
with --train-epochs N, the test accuracy of the network retrained from scratch for N epochs
(slower, and the fairer figure). Writes pareto.json and pareto.png (accuracy against latency
and against MACs, the Pareto front joined) into --out, and prints one JSON object with --json.

The default (4 λ, 3 epochs, inherited accuracy) takes a few minutes on a laptop CPU. The
latency cost's unit is the millisecond, so λ is "loss per ms"; with --cost-kind macs it is
"loss per million MACs" and needs larger values (e.g. 0,3,10,30).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _overrides(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name.strip()] = int(value)
    return out


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _figures(ir, arch, table) -> dict:
    from dasc.compiler.cost import arch_cost
    from dasc.compiler.prune import prune
    from dasc.runtime.latency import predicted_ticks

    cost = arch_cost(ir, arch)
    return {"predicted_ms": predicted_ticks(prune(ir, arch), table.ticks) / 1e6,
            "macs": cost.macs, "params": cost.params}


def _retrain(ir, arch, data, epochs: int, seed: int, out: Path) -> float:
    from dasc.compiler.prune import prune
    from dasc.runtime.train import TrainConfig, train

    out.mkdir(parents=True, exist_ok=True)
    result = train(prune(ir, arch), data, TrainConfig(epochs=epochs, seed=seed), out)
    return result.test_acc


def pareto_front(points: list[dict], x: str) -> list[dict]:
    """Points no other point beats on both `x` (lower) and accuracy (higher)."""
    front = []
    for p in sorted(points, key=lambda q: (q[x], -q["acc"])):
        if not front or p["acc"] > front[-1]["acc"]:
            front.append(p)
    return front


def plot(points: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, x, label in ((axes[0], "predicted_ms", "predicted latency (ms)"),
                         (axes[1], "macs", "MACs")):
        for p in points:
            marker = "s" if p["budget"] else "o"
            ax.scatter(p[x], p["acc"], marker=marker, color="#c44e52" if p["budget"] else "#4c72b0")
            ax.annotate(p["label"], (p[x], p["acc"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        front = pareto_front(points, x)
        ax.plot([p[x] for p in front], [p["acc"] for p in front], "--", color="grey", lw=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=str(ROOT / "spaces" / "digits.das"))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--lambdas", default="0,0.1,0.3,1")
    parser.add_argument("--budgets", default="", help="hard budgets (cost unit), e.g. 6,5")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cost-kind", choices=["latency", "macs", "params"], default="latency")
    parser.add_argument("--table", help="a latency table (default: profile the space first)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="clock of the table made here (cpu: steady on a shared machine)")
    parser.add_argument("--train-epochs", type=int, default=0,
                        help="also retrain each derived network from scratch for N epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "out" / "pareto"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from dasc.compiler.arch import read_arch
    from dasc.compiler.pipeline import compile_space
    from dasc.errors import Sources
    from dasc.runtime.data import load_dataset
    from dasc.runtime.driver import SearchRequest, run_search
    from dasc.runtime.latency import open_table
    from dasc.runtime.profiler import profile_space

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = _overrides(args.set)
    ir = compile_space(args.space, overrides)
    started = time.perf_counter()
    table_path = args.table
    if not table_path:
        table_path = str(out / "latency.json")
        (out / "latency.json").write_text(json.dumps(profile_space(ir, clock=args.clock)))
    table = open_table(table_path, ir)
    profile_s = time.perf_counter() - started
    data = load_dataset("digits") if args.train_epochs else None
    runs = [(lam, 0.0) for lam in _floats(args.lambdas)]
    runs += [(0.0, b) for b in _floats(args.budgets)]
    points = []
    for lam, budget in runs:
        name = f"budget_{budget:g}" if budget else f"lambda_{lam:g}"
        settings = {"epochs": args.epochs, "seed": args.seed, "cost": lam, "budget": budget,
                    "cost_kind": args.cost_kind, "latency_table": table_path}
        t0 = time.perf_counter()
        summary = run_search(SearchRequest(args.space, "digits", str(out / name), overrides,
                                           settings, force=True, progress=False), Sources())
        arch = read_arch(str(out / name / "arch.json"), ir)
        metrics = [json.loads(line) for line in
                   (out / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
        point = {"label": f"B={budget:g}" if budget else f"λ={lam:g}", "lambda": lam,
                 "budget": budget, "run": str(out / name),
                 "supernet_acc": summary["supernet_test_acc"],
                 "inherited_acc": summary["derived_test_acc_inherited"],
                 "expected_cost": metrics[-1].get("expected_cost"),
                 "search_s": round(time.perf_counter() - t0, 1), **_figures(ir, arch, table)}
        if args.train_epochs:
            point["retrained_acc"] = _retrain(ir, arch, data, args.train_epochs, args.seed,
                                              out / name / "train")
        point["acc"] = point.get("retrained_acc", point["inherited_acc"])
        points.append(point)
        if not args.json:
            print(f"{point['label']:>10}  acc {point['acc']:.4f}  predicted "
                  f"{point['predicted_ms']:.3f} ms  {point['macs']:,} MACs  "
                  f"{point['params']:,} params  ({point['search_s']} s)", file=sys.stderr)
    accuracy = "retrained" if args.train_epochs else "inherited (BN recalibrated)"
    report = {
        "space": ir.name, "cost_kind": args.cost_kind, "epochs": args.epochs,
        "seed": args.seed, "accuracy": accuracy, "table": table_path,
        "device": table.device, "device_name": table.device_name, "clock": table.clock,
        "batch": table.batch, "profile_s": round(profile_s, 1),
        "total_s": round(time.perf_counter() - started, 1),
        "machine": {"nproc": __import__("os").cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "points": points,
        "front_latency": [p["label"] for p in pareto_front(points, "predicted_ms")],
    }
    (out / "pareto.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(points, out / "pareto.png", f"{ir.name}: {args.epochs}-epoch searches, accuracy "
         f"{accuracy}, latency on {table.device} ({table.device_name}, {table.clock} clock)")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"wrote {out / 'pareto.json'} and {out / 'pareto.png'} "
              f"in {report['total_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
