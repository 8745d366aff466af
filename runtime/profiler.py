"""`dasc profile`: time every distinct op of a space and build its latency table.

Each distinct (op, arguments, input shapes) is built once with the same builder the
super-network and the derived network use (`runtime.lower.build_op`), fed random inputs of
the table's batch size, and timed in inference mode: a few untimed warm-up calls (lazy
initialisation, allocator and cuDNN autotuning settle), then `repeats` timed calls, of which
the table keeps the median and the spread (quartiles and extremes), so a noisy entry can be
seen as noisy. Entries are de-duplicated across cells and choices (a DARTS network has
hundreds of ops but a few dozen distinct ones), which is what keeps profiling to seconds.
"""

from __future__ import annotations

import datetime
from typing import Callable

from dasc import __version__
from dasc.compiler.ir import IR
from dasc.runtime.latency import (FORMAT, VERSION, device_name, space_ops, summary,
                                  threads_as, time_forward)

DEFAULT_BATCH = 64
DEFAULT_REPEATS = 20
DEFAULT_WARMUP = 3


def profile_space(ir: IR, device: str = "cpu", batch: int = DEFAULT_BATCH,
                  repeats: int = DEFAULT_REPEATS, warmup: int = DEFAULT_WARMUP,
                  clock: str = "wall",
                  progress: Callable[[int, int, str], None] | None = None) -> dict:
    """The latency table of `ir` on `device` (the JSON document `dasc profile` writes).

    `clock="cpu"` (CPU only) times process CPU time on one thread, the figure a shared
    machine can still measure reliably (runtime/latency.py `time_forward`).
    """
    if clock == "cpu" and device != "cpu":
        raise ValueError("the cpu clock times CPU work; CUDA is timed with events")
    if clock == "cpu":
        with threads_as(1):
            return _profile(ir, device, batch, repeats, warmup, clock, progress)
    return _profile(ir, device, batch, repeats, warmup, clock, progress)


def _profile(ir: IR, device: str, batch: int, repeats: int, warmup: int, clock: str,
             progress: Callable[[int, int, str], None] | None) -> dict:
    import torch

    from dasc.runtime.checkpoint import fingerprint
    from dasc.runtime.lower import build_op

    torch.manual_seed(0)
    ops = space_ops(ir)
    entries: dict[str, dict] = {}
    for i, (key, (call, shapes, uses)) in enumerate(ops.items()):
        module = build_op(call.op, call.argdict(), shapes).to(device).eval()
        inputs = [torch.randn(batch, s.c, s.h, s.w, device=device) for s in shapes]
        stats = summary(time_forward(module, inputs, device, warmup, repeats, clock))
        entries[key] = {"op": call.op, "args": call.argdict(),
                        "inputs": [[s.c, s.h, s.w] for s in shapes], "uses": uses,
                        **{k: round(v, 6) for k, v in stats.items()}}
        if progress:
            progress(i + 1, len(ops), key)
    return {
        "format": FORMAT,
        "version": VERSION,
        "space": ir.name,
        "params": dict(ir.params),
        "fingerprint": fingerprint(ir),
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "clock": clock,
        "torch": torch.__version__,
        "dasc": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "batch": batch,
        "warmup": warmup,
        "repeats": repeats,
        "entries": entries,
    }


def slowest(table: dict, n: int = 5) -> list[tuple[str, float, int]]:
    """The entries that cost the most over the whole super-network (median x uses)."""
    rows = [(k, e["median_ms"], e["uses"]) for k, e in table["entries"].items()]
    return sorted(rows, key=lambda r: -r[1] * r[2])[:n]
