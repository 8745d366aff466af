"""Supernet step time and peak memory: dasc's generated DARTS supernet against the hand-written one.

    python bench/supernet_step.py --C 8 --layers 5 --batch 32 --order 1 --steps 10 --json
    python bench/supernet_step.py ... --no-baseline          # time dasc alone

Why it is built this way (DESIGN.md, "How we measure ourselves"):

* one timed unit is what a search iteration costs: an architecture step (first order, or the
  unrolled second-order step with its finite-difference Hessian-vector product) followed by a
  weight step, on fixed random 3×32×32 batches (data loading is not what we compare);
* each side runs in its own fresh subprocess, so `ru_maxrss` (peak resident set of that process,
  torch import included for both) is attributable to one implementation only;
* `--warmup` untimed steps come first (allocator and kernel warm-up); the figure is the median of
  `--steps` timed steps; on CUDA each step is synchronised and `peak_cuda_mb` is reported too.

The dasc side calls `dasc.runtime.bench_hooks.make_step(space_path, C, layers, batch, order)`
(a zero-argument callable doing one α step + one w step, provided by the runtime); while that
hook does not exist the dasc figures are `null` with a `dasc_note` saying why.

Output keys: `median_ms`, `peak_rss_mb` (dasc), `baseline_median_ms`, `baseline_peak_rss_mb`,
`speedup` = baseline_median_ms / median_ms (>1: dasc is faster), `memory_ratio` =
peak_rss_mb / baseline_peak_rss_mb (<1: dasc uses less), plus `config`, `machine`, and the raw
per-step times of each side.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def default_space() -> str:
    try:
        from importlib.resources import files
        return str(files("dasc.spaces") / "darts.das")
    except Exception:  # dasc not importable: fall back to the checkout layout
        return str(REPO / "spaces" / "darts.das")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--C", type=int, default=8, help="initial channels of the search network")
    p.add_argument("--layers", type=int, default=5, help="number of cells")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--order", type=int, choices=(1, 2), default=1, help="architecture-gradient order")
    p.add_argument("--steps", type=int, default=10, help="timed steps (median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    p.add_argument("--space", default=None, help="the .das space for dasc (default: shipped darts.das)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true", help="time dasc only")
    p.add_argument("--json", action="store_true", help="print one JSON object (else a short table)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per side")
    p.add_argument("--child", choices=("dasc", "baseline"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------ child side: one implementation
def _make_dasc_step(args):
    import inspect
    try:
        import dasc.runtime.search  # noqa: F401  (the runtime must at least import)
        from dasc.runtime.bench_hooks import make_step
    except Exception as e:  # ImportError until the runtime lands; anything else is reported too
        return None, f"dasc runtime unavailable: {type(e).__name__}: {e}"
    kwargs = {}
    params = inspect.signature(make_step).parameters
    for name, value in (("device", args.device), ("seed", args.seed)):
        if name in params:
            kwargs[name] = value
    space = args.space or default_space()
    return make_step(space, args.C, args.layers, args.batch, args.order, **kwargs), None


def _make_baseline_step(args):
    sys.path.insert(0, str(HERE))
    from baseline_darts import make_baseline_step
    return make_baseline_step(C=args.C, layers=args.layers, batch=args.batch, order=args.order,
                              device=args.device, seed=args.seed), None


def run_child(args) -> dict:
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    maker = _make_dasc_step if args.child == "dasc" else _make_baseline_step
    step, note = maker(args)
    out = {"side": args.child, "threads": torch.get_num_threads()}
    if step is None:
        out.update(median_ms=None, note=note)
    else:
        cuda = args.device.startswith("cuda")
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        for _ in range(args.warmup):
            step()
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            step()
            sync()
            times.append((time.perf_counter() - t0) * 1000.0)
        out.update(median_ms=statistics.median(times), step_ms=[round(t, 3) for t in times])
        if cuda:
            out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    # Linux reports ru_maxrss in KiB (macOS in bytes)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_rss_mb"] = rss / (2**20 if sys.platform == "darwin" else 1024)
    return out


# ---------------------------------------------------------------- parent side: orchestration
def spawn(side: str, args) -> dict:
    """Run one side in a fresh interpreter; its last stdout line is its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", side,
           "--C", str(args.C), "--layers", str(args.layers), "--batch", str(args.batch),
           "--order", str(args.order), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--device", args.device, "--threads", str(args.threads), "--seed", str(args.seed)]
    if args.space:
        cmd += ["--space", args.space]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"median_ms": None, "peak_rss_mb": None, "note": f"timed out after {args.timeout}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        how = f"exit {proc.returncode}"
        if proc.returncode < 0:  # killed by a signal; glibc abort messages go to the tty, not stderr
            import signal
            how = f"killed by {signal.Signals(-proc.returncode).name}"
        return {"median_ms": None, "peak_rss_mb": None,
                "note": f"{side} run failed ({how}): {' | '.join(tail) or 'no output'}"}
    return json.loads(lines[-1])


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}
    if hasattr(os, "getloadavg"):  # a busy machine makes CPU timings meaningless: record it
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import torch
        info["torch"] = torch.__version__
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                        capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        pass
    return info


def _ratio(a, b):
    return round(a / b, 4) if a is not None and b else None


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args)))
        return 0
    dasc = spawn("dasc", args)
    base = None if args.no_baseline else spawn("baseline", args)
    result = {
        "median_ms": dasc.get("median_ms"),
        "peak_rss_mb": dasc.get("peak_rss_mb") if dasc.get("median_ms") is not None else None,
        "baseline_median_ms": base.get("median_ms") if base else None,
        "baseline_peak_rss_mb": base.get("peak_rss_mb") if base else None,
    }
    result["speedup"] = _ratio(result["baseline_median_ms"], result["median_ms"])
    result["memory_ratio"] = _ratio(result["peak_rss_mb"], result["baseline_peak_rss_mb"])
    for key, side in (("peak_cuda_mb", dasc), ("baseline_peak_cuda_mb", base or {})):
        if "peak_cuda_mb" in side:
            result[key] = side["peak_cuda_mb"]
    result["config"] = {k: getattr(args, k) for k in
                        ("C", "layers", "batch", "order", "steps", "warmup", "device", "seed")}
    result["config"]["threads"] = dasc.get("threads") or (base or {}).get("threads")
    result["config"]["space"] = args.space or default_space()
    result["config"]["input"] = [3, 32, 32]
    result["machine"] = machine_info(args.device)
    result["dasc_step_ms"] = dasc.get("step_ms")
    if base:
        result["baseline_step_ms"] = base.get("step_ms")
    if dasc.get("note"):
        result["dasc_note"] = dasc["note"]
    if base and base.get("note"):
        result["baseline_note"] = base["note"]
    result["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if args.json:
        print(json.dumps(result))
    else:
        fmt = lambda v, unit: "n/a" if v is None else f"{v:.1f} {unit}"  # noqa: E731
        print(f"supernet step (C={args.C}, layers={args.layers}, batch={args.batch}, "
              f"order={args.order}, {args.steps} steps on {args.device})")
        print(f"  dasc     : {fmt(result['median_ms'], 'ms')}  peak RSS {fmt(result['peak_rss_mb'], 'MB')}")
        if not args.no_baseline:
            print(f"  baseline : {fmt(result['baseline_median_ms'], 'ms')}  "
                  f"peak RSS {fmt(result['baseline_peak_rss_mb'], 'MB')}")
            print(f"  speedup {result['speedup']}  memory ratio {result['memory_ratio']}")
        for key in ("dasc_note", "baseline_note"):
            if key in result:
                print(f"  {key}: {result[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
