"""Latency tables: what `dasc profile` writes, how search, budgets and `derive` read them.

A table maps every distinct (op, arguments, input shapes) of one compiled space to its measured
forward latency on one device at one batch size. It is tied to the space by the checkpoint
fingerprint (node ids, ops, shapes), so a table made for another space or other `--set`
values is refused rather than silently mis-read; a table missing an entry (edited, or written
by an older dasc) is refused too, naming the entry. Each refusal says how to fix it: re-run
`dasc profile`.

Where the device matters. `derive --latency` times the real derived network, which is only
comparable with the table on the machine that measured it, so it insists on the same device
kind and name. A search does not: ProxylessNAS's practice is to measure on the target device
and search anywhere, so the table is the target's and the run records which device that was.

The prediction is additive: the sum, over the derived network's ops, of their table entries
rounded to the nanosecond (compiler/budget.py counts budgets in those very ticks, so a budget
and the reported prediction cannot disagree). `none` costs nothing; sums, concatenations and
the framework's per-module overhead are not in the table, which is what the measured gap
shows. Torch is imported only by the functions that time something.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dasc.compiler.budget import BudgetRule, OpTicks, make_budget, model_ticks
from dasc.compiler.ir import IR, ChoiceNode, OpCall, OpNode
from dasc.errors import Span, UsageError
from dasc.fsutil import input_problem
from dasc.ops import REGISTRY
from dasc.ops.registry import Shape

FORMAT = "dasc-latency"
VERSION = 1
NS_PER_MS = 1_000_000


def entry_key(call: OpCall, shapes: Sequence[Shape]) -> str:
    """`sep_conv_3x3(stride=1) @ [8, 8, 8]`: readable, and stable across dasc runs."""
    return f"{call} @ {' + '.join(str(s) for s in shapes)}"


def is_free(call: OpCall) -> bool:
    """`none` (a zero tensor) is never timed and costs nothing (see the module doc)."""
    spec = REGISTRY.get(call.op)
    return bool(spec is not None and spec.zero)


def space_ops(ir: IR) -> dict[str, tuple[OpCall, tuple[Shape, ...], int]]:
    """Every distinct op of the space: fixed ops and each candidate's ops, with how often
    each occurs (key -> (call, input shapes, uses)), in the IR's order."""
    out: dict[str, tuple[OpCall, tuple[Shape, ...], int]] = {}

    def add(call: OpCall, shapes: tuple[Shape, ...]) -> None:
        if is_free(call):
            return
        key = entry_key(call, shapes)
        old = out.get(key)
        out[key] = (call, shapes, (old[2] if old else 0) + 1)

    for _, p in ir.nodes():
        if isinstance(p, OpNode):
            add(p.call, tuple(ir.node(x).shape for x in p.inputs))
        elif isinstance(p, ChoiceNode):
            x = ir.node(p.inputs[0]).shape
            for cand in p.candidates:
                for b in cand.nodes:
                    add(b.call, tuple(x if j < 0 else cand.nodes[j].shape for j in b.inputs))
    return out


# ----------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class LatencyTable:
    """A validated table: per-entry medians in ms, and where they were measured."""

    path: str
    space: str
    fingerprint: str
    device: str
    device_name: str
    batch: int
    threads: int
    repeats: int
    warmup: int
    entries: Mapping[str, float]
    clock: str = "wall"

    def ms(self, call: OpCall, shapes: Sequence[Shape]) -> float:
        if is_free(call):
            return 0.0
        key = entry_key(call, shapes)
        if key not in self.entries:
            raise _refuse(self.path, f"it has no entry for `{key}`", self.space)
        return self.entries[key]

    def ticks(self, call: OpCall, shapes: Sequence[Shape]) -> int:
        """The entry in integer nanoseconds: the unit budgets and predictions add up."""
        return round(self.ms(call, shapes) * NS_PER_MS)

    def describe(self) -> str:
        return f"{self.device} ({self.device_name}), batch {self.batch}"


def _refuse(path: str, why: str, space: str = "SPACE", set_args: str = "") -> UsageError:
    return UsageError(f"latency table {path} cannot be used: {why}", Span.of_file(path),
                      f"re-run the profiler for space '{space}' on this device: "
                      f"dasc profile SPACE{set_args} -o {path}")


def read_table(path: str) -> dict:
    """The table's JSON, checked for shape; a corrupt or foreign file is a UsageError."""
    p = Path(path)
    span = Span.of_file(path)
    problem = input_problem(p)
    if problem:
        raise UsageError(f"latency table {path} {problem}", span,
                         "make one with: dasc profile SPACE -o latency.json")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"latency table {path} is corrupt ({type(exc).__name__})", span,
                         "re-run dasc profile to write it again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not a dasc latency table", span,
                         "pass a table written by `dasc profile -o`")
    if data.get("version") != VERSION:
        raise UsageError(f"latency table {path} has version {data.get('version')!r}; this "
                         f"dasc reads version {VERSION}", span, "re-run dasc profile")
    entries = data.get("entries")
    ok = isinstance(entries, dict) and all(
        isinstance(e, dict) and _finite(e.get("median_ms")) and e["median_ms"] >= 0
        for e in entries.values())
    fields = ("space", "fingerprint", "device", "device_name")
    ok = ok and all(isinstance(data.get(k), str) for k in fields)
    ok = ok and all(isinstance(data.get(k), int) and data[k] > 0
                    for k in ("batch", "threads", "repeats"))
    ok = ok and data.get("clock", "wall") in CLOCKS
    if not ok:
        raise UsageError(f"latency table {path} is corrupt (missing or malformed fields)", span,
                         "re-run dasc profile to write it again")
    return data


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def open_table(path: str, ir: IR, *, same_machine: bool = False) -> LatencyTable:
    """The table for `ir`, refused if stale (another space or parameters) or incomplete;
    `same_machine`: also refused unless this machine is the device that measured it."""
    from dasc.runtime.checkpoint import fingerprint

    data = read_table(path)
    params = dict(ir.params)
    set_args = "".join(f" --set {k}={v}" for k, v in params.items())
    if data["fingerprint"] != fingerprint(ir):
        theirs = data.get("params") or {}
        what = (f"it was profiled for space '{data['space']}'" if data["space"] != ir.name else
                f"it was profiled for '{ir.name}' with other parameters "
                f"({_params(theirs)}; now {_params(params)})" if theirs != params else
                f"space '{ir.name}' has changed since it was profiled")
        raise _refuse(path, what, ir.name, set_args)
    entries = {k: float(e["median_ms"]) for k, e in data["entries"].items()}
    missing = [k for k in space_ops(ir) if k not in entries]
    if missing:
        raise _refuse(path, f"{len(missing)} op(s) of the space have no entry, e.g. "
                            f"`{missing[0]}`", ir.name, set_args)
    table = LatencyTable(path, data["space"], data["fingerprint"], data["device"],
                         data["device_name"], data["batch"], data["threads"], data["repeats"],
                         int(data.get("warmup", 0)), entries, data.get("clock", "wall"))
    if same_machine:
        here = device_name(table.device)
        if here != table.device_name:
            raise _refuse(path, f"it was measured on {table.device} '{table.device_name}', "
                                f"this machine's {table.device} is '{here}'", ir.name, set_args)
    return table


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "none"


# ----------------------------------------------------------------------------- costs

def op_ticks_for(ir: IR, kind: str, table_path: str = "") -> OpTicks:
    """Per-op integer cost of `kind`: the cost model's params or MACs, or table latency."""
    if kind != "latency":
        return model_ticks(kind)
    if not table_path:
        raise UsageError("cost_kind = latency needs a latency table", None,
                         f"measure one with `dasc profile {ir.name}.das -o latency.json`, then "
                         f"set `latency_table = \"latency.json\"` in the search settings")
    return open_table(table_path, ir).ticks


def budget_rule(ir: IR, config: Any) -> BudgetRule | None:
    """The hard budget a search configuration asks for (None: no budget)."""
    if not getattr(config, "budget", 0):
        return None
    ticks = op_ticks_for(ir, config.cost_kind, config.latency_table)
    return make_budget(ir, config.cost_kind, config.budget, ticks)


def predicted_ticks(derived: IR, ticks: Callable[[OpCall, Sequence[Shape]], int]) -> int:
    """Sum over the ops of a derived (pruned) network."""
    return sum(ticks(p.call, [derived.node(x).shape for x in p.inputs])
               for _, p in derived.nodes() if isinstance(p, OpNode))


# ----------------------------------------------------------------------------- timing

def device_name(device: str) -> str:
    """What identifies the hardware: the GPU's name, or the CPU's model name."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown cpu"


CLOCKS = ("wall", "cpu")


def time_forward(module: Any, inputs: Sequence[Any], device: str, warmup: int,
                 repeats: int, clock: str = "wall") -> list[float]:
    """Milliseconds of `repeats` forward calls after `warmup` untimed ones, in inference mode.

    CUDA is timed with events and synchronised, so asynchronous launches are not mistaken for
    finished work. On a CPU, `clock="wall"` is latency proper; `"cpu"` is the process's CPU
    time, which equals it for single-threaded work on an idle machine but does not count the
    time other processes hold the core: on a shared machine a 10 ms forward pass is preempted
    almost every time while a 0.1 ms op almost never is, and wall-clock comparisons of the two
    say more about the neighbours than about the network.
    """
    import time

    import torch

    now = time.process_time if clock == "cpu" else time.perf_counter
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(*inputs)
        if device == "cuda":
            torch.cuda.synchronize()
            for _ in range(repeats):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                module(*inputs)
                end.record()
                end.synchronize()
                times.append(float(start.elapsed_time(end)))
        else:
            for _ in range(repeats):
                t0 = now()
                module(*inputs)
                times.append((now() - t0) * 1000.0)
    return times


def summary(times: Sequence[float]) -> dict[str, float]:
    """Median and spread (quartiles, extremes) of a list of timings, in ms."""
    xs = sorted(times)

    def q(f: float) -> float:
        pos = f * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {"median_ms": q(0.5), "p25_ms": q(0.25), "p75_ms": q(0.75),
            "min_ms": xs[0], "max_ms": xs[-1]}


class threads_as:
    """Run CPU timings with the thread count the table was measured with."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        import torch

        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch.set_num_threads(self.old)


def measure_network(ir: IR, arch: Any, device: str, batch: int, warmup: int,
                    repeats: int, clock: str = "wall") -> dict[str, float]:
    """The real derived network, `lower(prune(ir, arch))`, timed end to end."""
    import torch

    from dasc.compiler.prune import prune
    from dasc.runtime.lower import lower

    torch.manual_seed(0)
    model = lower(prune(ir, arch)).to(device).eval()
    s = ir.node(ir.input).shape
    x = torch.randn(batch, s.c, s.h, s.w, device=device)
    return summary(time_forward(model, (x,), device, warmup, repeats, clock))


def latency_report(ir: IR, arch: Any, table_path: str) -> dict:
    """Predicted latency (table sum over the derived network's ops) next to the measured
    latency of the real derived module on the table's device and batch, and the gap
    (measured - predicted; in % of measured)."""
    from dasc.compiler.prune import prune

    table = open_table(table_path, ir, same_machine=True)
    if table.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise _refuse(table_path, "it was measured on CUDA and no CUDA device is "
                                      "available here", ir.name)
    derived = prune(ir, arch)
    predicted = predicted_ticks(derived, table.ticks) / NS_PER_MS
    with threads_as(table.threads):
        measured = measure_network(ir, arch, table.device, table.batch,
                                   max(table.warmup, 3), max(table.repeats, 10), table.clock)
    m = measured["median_ms"]
    return {"predicted_ms": predicted, "measured_ms": m, "gap_ms": m - predicted,
            "gap_pct": 100.0 * (m - predicted) / m if m > 0 else 0.0,
            "measured_p25_ms": measured["p25_ms"], "measured_p75_ms": measured["p75_ms"],
            "device": table.device, "device_name": table.device_name,
            "batch": table.batch, "threads": table.threads, "clock": table.clock,
            "table": table_path}
