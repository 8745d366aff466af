"""Search quality on digits: the searched architecture against random ones, trained the same way.

    python bench/search_quality.py [--random 4] [--epochs 15] [--seed 0] [--json]

Runs `dasc search` on spaces/digits.das, retrains the derived architecture from scratch, and
retrains `--random` architectures drawn uniformly from the same space (among those satisfying
its constraints) with exactly the same recipe, seed and data. Prints the test accuracies, the
random architectures' mean and spread, and where the searched one ranks.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPACE = str(REPO / "spaces" / "digits.das")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--random", type=int, default=4, help="random architectures to train")
    p.add_argument("--epochs", type=int, default=15, help="training epochs for every network")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def train_arch(ir, arch, data, epochs: int, seed: int, out: Path) -> dict:
    from dasc.compiler.cost import arch_cost
    from dasc.compiler.prune import prune
    from dasc.runtime.train import TrainConfig, train

    out.mkdir(parents=True, exist_ok=True)
    result = train(prune(ir, arch), data, TrainConfig(epochs=epochs, seed=seed), str(out))
    cost = arch_cost(ir, arch)
    return {"test_acc": result.test_acc, "params": cost.params, "macs": cost.macs,
            "ops": sorted({op for _, op in arch.choices})}


def main(argv=None) -> int:
    import torch

    from dasc.compiler.arch import read_arch, random_arch
    from dasc.compiler.pipeline import compile_space
    from dasc.errors import Sources
    from dasc.runtime.data import load_dataset
    from dasc.runtime.driver import SearchRequest, run_search

    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    ir = compile_space(SPACE, {}, Sources())
    data = load_dataset("digits")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        search = run_search(SearchRequest(SPACE, "digits", str(work / "search"),
                                          settings={"seed": args.seed}, progress=False), Sources())
        searched = train_arch(ir, read_arch(str(work / "search" / "arch.json"), ir), data,
                              args.epochs, args.seed, work / "train_searched")
        rng = random.Random(args.seed)
        randoms = [train_arch(ir, random_arch(ir, rng), data, args.epochs, args.seed,
                              work / f"train_random{i}") for i in range(args.random)]
    accs = [r["test_acc"] for r in randoms]
    result = {
        "command": "python bench/search_quality.py " + " ".join(sys.argv[1:]),
        "machine": platform.platform(), "seconds": round(time.time() - started, 1),
        "search": {k: search[k] for k in ("supernet_test_acc", "derived_test_acc_inherited",
                                          "discretization_gap")},
        "searched": searched, "random": randoms,
        "random_mean": statistics.mean(accs) if accs else None,
        "random_stdev": statistics.stdev(accs) if len(accs) > 1 else None,
        "searched_beats": sum(searched["test_acc"] > a for a in accs),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"searched: test acc {searched['test_acc']:.4f} ({searched['params']:,} params)")
        for i, r in enumerate(randoms):
            print(f"random {i}: test acc {r['test_acc']:.4f} ({r['params']:,} params)")
        print(f"random mean {result['random_mean']:.4f}; searched beats {result['searched_beats']}"
              f" of {len(randoms)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
