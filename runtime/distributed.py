"""Data-parallel search and training on torch.distributed (gloo on CPU, NCCL on CUDA).

`--nproc N` starts N copies of the same command through torch's elastic launcher — what
`torchrun` does — so `torchrun --nproc-per-node N -m dasc search ...` (and multi-node runs through
torchrun's rendezvous options) work the same way. Each worker finds its rank in the environment
the launcher sets; gradients of w and α are averaged with one all-reduce per step, so every
rank holds identical parameters and optimizer states and only rank 0 writes.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dasc.errors import Span, UsageError


@dataclass(frozen=True)
class WorldInfo:
    """Rank and size from the launcher's environment (rank 0 of 1 without a launcher)."""

    rank: int
    world: int
    local_rank: int

    @staticmethod
    def from_env() -> "WorldInfo":
        return WorldInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                         int(os.environ.get("LOCAL_RANK", 0)))


def init_from_env(device: str) -> WorldInfo:
    """Join the process group when launched as a worker; a no-op for a single process."""
    info = WorldInfo.from_env()
    if info.world > 1 and not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device == "cuda":
            torch.cuda.set_device(info.local_rank)
    return info


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average_across_ranks(tensors: list[torch.Tensor]) -> None:
    """Average gradients in place across ranks with a single flat all-reduce."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m dasc <argv>` in `nproc` local workers; any worker failing stops all.

    The elastic agent watches the workers: when one dies, it terminates the others (no hang in
    a collective) and reports the failure; `max_restarts=0` because a restarted worker could
    not rejoin a run whose other ranks are mid-epoch — the user resumes from the checkpoint.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}", None,
                         "use --nproc 2 for two worker processes")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=uuid.uuid4().hex[:8], rdzv_backend="c10d",
                          rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0,
                          monitor_interval=0.2, start_method="spawn")
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "dasc", *argv)
    except ChildFailedError as exc:
        failures = exc.failures
        ranks = ", ".join(str(r) for r in sorted(failures))
        codes = {f.exitcode for f in failures.values()}
        if codes == {2}:
            return 2  # a user error: the worker already printed its diagnostic
        raise UsageError(f"worker process(es) {ranks} of {nproc} failed "
                         f"(exit {', '.join(str(c) for c in sorted(codes))}); all workers were stopped",
                         Span.of_file("<workers>"),
                         "fix the cause shown above, then continue with `dasc search --resume RUN_DIR`") from None
    return 0
