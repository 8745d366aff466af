"""The discretization gap on digits and the search settings that control it.

    python bench/gap.py [--seeds 0 1 2] [--epochs 10] [--json]

DARTS trains a weighted mixture and then keeps one op per choice; when the mixture weights are
far from one-hot the network that is kept is not the one that was trained, and its accuracy
with the inherited weights drops — the discretization gap that `dasc search` reports. This runs
`dasc search spaces/digits.das` (the real CLI, each run in its own process) once per setting
and seed and prints supernet accuracy, derived accuracy with inherited weights (BN
re-estimated) and the gap, so a change to the defaults can be judged on more than one seed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPACE = str(REPO / "spaces" / "digits.das")

# name -> extra `dasc search` flags (on top of the space's `search { }` block)
SETTINGS: dict[str, list[str]] = {
    "plain softmax (tau 1)": ["--entropy", "0", "--arch-lr", "0.003"],
    "softmax, tau 1 -> 0.02 (exp.)": ["--entropy", "0", "--arch-lr", "0.01",
                                      "--schedule", "exponential", "--tau", "1",
                                      "--tau-end", "0.02"],
    "gumbel, tau 1 -> 0.1 (exp.)": ["--entropy", "0", "--arch-lr", "0.01", "--gate", "gumbel",
                                    "--schedule", "exponential", "--tau", "1",
                                    "--tau-end", "0.1"],
    "softmax + entropy 1.0": ["--entropy", "1.0", "--arch-lr", "0.01"],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--only", nargs="*", help="run only the settings whose name contains this")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def search(flags: list[str], seed: int, epochs: int, workdir: Path) -> dict:
    run_dir = workdir / f"run-{seed}-{abs(hash(tuple(flags)))}"
    cmd = [sys.executable, "-m", "dasc", "search", SPACE, "-o", str(run_dir), "--quiet",
           "--seed", str(seed), "--epochs", str(epochs), *flags]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"supernet": summary["supernet_test_acc"],
            "derived": summary["derived_test_acc_inherited"],
            "gap": summary["discretization_gap"], "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in SETTINGS.items():
            if args.only and not any(o in name for o in args.only):
                continue
            for seed in args.seeds:
                result = search(flags, seed, args.epochs, Path(tmp))
                rows.append({"setting": name, "seed": seed, "flags": flags, **result})
                if not args.json:
                    print(json.dumps(rows[-1]), flush=True)
    means = {}
    for name in dict.fromkeys(r["setting"] for r in rows):
        ok = [r for r in rows if r["setting"] == name and "gap" in r]
        if ok:
            means[name] = {k: round(statistics.mean(r[k] for r in ok), 4)
                           for k in ("supernet", "derived", "gap")}
    out = {"rows": rows, "means": means, "epochs": args.epochs,
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "python": platform.python_version()},
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if args.json:
        print(json.dumps(out))
    else:
        for name, m in means.items():
            print(f"{name:32s} supernet {m['supernet']:.4f}  derived {m['derived']:.4f}  "
                  f"gap {m['gap']:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
