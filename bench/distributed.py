"""Data-parallel search throughput: 1 and 2 processes on this machine's cores (and 1 GPU).

    python bench/distributed.py --json                     # digits space, C=8, 3 cells, batch 64
    python bench/distributed.py --order 2 --sync-bn --json
    python bench/distributed.py --device cuda --json       # 1 GPU (where there is one)

Why it is built this way:

* each configuration runs the real search step (`Searcher.step`: the α step, the w step, the
  shard-weighted all-reduces and the per-step sync of figures and BN statistics) on the bundled
  digits, in fresh processes that join a gloo group exactly as `dasc search --nproc N` workers
  do; compile, warm-up and process start are not timed;
* the cores are shared fairly: a run of N processes gives each cores/N torch threads, so
  "1 process" uses the whole machine too. A second 1-process run with cores/2 threads shows
  what one worker of the 2-process run does alone;
* a step consumes a weight batch and an architecture batch of B images each (B the global
  batch); `images_per_s` counts both: 2·B / median step time;
* `scaling_efficiency` = images_per_s(N) / (N · images_per_s(1 process, cores/N threads)) —
  the parallel efficiency of the workers; `speedup_vs_whole_machine` = images_per_s(N) /
  images_per_s(1 process, all cores) — what a user gains by adding `--nproc N`;
* wall-clock figures need idle cores: on a shared machine (see `load_avg_1m`) a collective waits
  for the most descheduled rank. `cpu_efficiency` = CPU time of one step in one process /
  CPU time of one step summed over the N ranks (time.process_time, same threads) is the
  load-independent part: how much extra work splitting the batch and the all-reduces cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default=str(REPO / "spaces" / "digits.das"))
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=64, help="global batch (split over processes)")
    p.add_argument("--order", type=int, choices=(1, 2), default=1)
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--procs", default="1,2", help="process counts to run, comma-separated")
    p.add_argument("--device", default="cpu", help="cpu, or cuda for a 1-GPU figure")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def _rank(rank: int, world: int, port: int, args, threads: int, out: str) -> None:
    """One worker: join the group, build the searcher, time `steps` steps."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch

    torch.set_num_threads(threads)
    from dasc.compiler.pipeline import compile_space
    from dasc.errors import Sources
    from dasc.runtime import distributed
    from dasc.runtime.config import SearchConfig
    from dasc.runtime.data import load_dataset
    from dasc.runtime.search import Parallel, Searcher

    distributed.init_from_env()
    ir = compile_space(args.space, {"C": args.C, "layers": args.layers}, Sources())
    cfg = SearchConfig(epochs=1, batch_size=args.batch, order=args.order, device=args.device,
                       w_lr=0.05, arch_lr=0.003)
    par = Parallel(rank, world, distributed.average_across_ranks, distributed.sync_step,
                   args.sync_bn)
    searcher = Searcher(ir, load_dataset("digits"), cfg, Path(tempfile.gettempdir()), par)
    batches = searcher.batches(0)
    times, cpu = [], []
    for i in range(args.warmup + args.steps):
        if world > 1:
            torch.distributed.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        searcher.step(*batches[i % len(batches)])
        if args.device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    distributed.shutdown()
    Path(f"{out}.{rank}").write_text(json.dumps({"wall": times[args.warmup:],
                                                  "cpu": cpu[args.warmup:]}))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(args, world: int, threads: int) -> dict:
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        mp.start_processes(_rank, (world, port, args, threads, out), nprocs=world,
                           start_method="spawn")
        ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(world)]
    times = ranks[0]["wall"]
    median = statistics.median(times)
    cpu = sum(statistics.median(r["cpu"]) for r in ranks)  # all ranks' CPU time for one step
    return {"processes": world, "threads_per_process": threads,
            "step_ms_median": round(median * 1000, 2),
            "step_ms_min": round(min(times) * 1000, 2),
            "images_per_s": round(2 * args.batch / median, 1),
            "cpu_ms_per_step": round(cpu * 1000, 2)}


def main(argv=None) -> int:
    args = parse_args(argv)
    cores = os.cpu_count() or 1
    procs = [int(p) for p in args.procs.split(",")]
    if args.device == "cuda":
        procs = [1]  # one GPU here; more GPUs: one process each, via --nproc
    runs = []
    for world in procs:
        runs.append(measure(args, world, max(1, cores // world)))
    by_world = {r["processes"]: r for r in runs}
    extra = {}
    for world in procs:
        if world > 1 and args.device == "cpu":
            same = measure(args, 1, max(1, cores // world))  # one worker alone, same threads
            runs.append(same)
            extra[f"scaling_efficiency_{world}"] = round(
                by_world[world]["images_per_s"] / (world * same["images_per_s"]), 3)
            extra[f"cpu_efficiency_{world}"] = round(
                same["cpu_ms_per_step"] / by_world[world]["cpu_ms_per_step"], 3)
            if 1 in by_world:
                extra[f"speedup_vs_whole_machine_{world}"] = round(
                    by_world[world]["images_per_s"] / by_world[1]["images_per_s"], 3)
    import torch

    report = {
        "config": {"space": Path(args.space).name, "C": args.C, "layers": args.layers,
                   "global_batch": args.batch, "order": args.order, "sync_bn": args.sync_bn,
                   "steps": args.steps, "warmup": args.warmup, "device": args.device},
        "machine": {"cores": cores, "cpu": cpu_model(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "runs": runs, **extra,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for r in runs:
            print(f"{r['processes']} process(es) × {r['threads_per_process']} threads: "
                  f"{r['images_per_s']:.1f} images/s (step {r['step_ms_median']:.1f} ms)")
        for key, value in extra.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
