"""Data-parallel search and training on torch.distributed (gloo on CPU, NCCL on CUDA).

`--nproc N` starts N copies of the command through torch's elastic launcher — what `torchrun`
does — so `torchrun --nproc-per-node N -m dasc search ...` (and multi-node runs through
torchrun's rendezvous options) work the same way. Each worker finds its rank in the environment
the launcher sets. A step's gradients of w and α are combined with one flat all-reduce each,
weighted by each rank's share of the global batch, so every rank holds bit-identical parameters
and optimizer states and only rank 0 writes. The scalars a step reports, the interrupt flag and
the BN running statistics travel together in one more small all-reduce per step.

A process that is already inside a launched world (WORLD_SIZE > 1) never launches again: that is
what lets `--nproc` and `torchrun` share one code path.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import torch
import torch.distributed as dist

from dasc.errors import DascError, UsageError

T = TypeVar("T")
# What gloo and NCCL say when a peer's connection drops or a collective times out.
_LOST = re.compile(r"gloo|nccl|[Cc]onnection (closed|reset)|peer|[Tt]imed? ?out|Broken pipe")

# A collective that waits this long has a peer that is alive but stuck; a dead peer is noticed
# at once (its sockets close, and the launcher stops everyone). Seconds; override for huge steps.
TIMEOUT_ENV = "DASC_DIST_TIMEOUT"
# Test hook: "RANK:N" makes that rank SIGKILL itself after its N-th step (the kill test).
DIE_ENV = "DASC_TEST_DIE_AT_STEP"
# Set for the workers `--nproc` starts: their parent prints the command's result.
PARENT_ENV = "DASC_LAUNCHED_BY_PARENT"


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

    @property
    def launched(self) -> bool:
        """Inside a world a launcher made: run here, never launch again."""
        return self.world > 1


class WorkerFailed(UsageError):
    """A launched worker died or crashed; `rank` is the one that did first."""

    def __init__(self, message: str, rank: int, hint: str | None = None) -> None:
        super().__init__(message, None, hint)
        self.rank = rank


class PeerLost(DascError):
    """Another worker stopped (crashed, killed, out of memory) in the middle of a collective."""


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_from_env() -> WorldInfo:
    """Join the process group when launched as a worker; a no-op for a single process.

    The backend is chosen by tensor device ("cpu:gloo,cuda:nccl" where CUDA exists, else
    gloo), so the group can be joined before the run's device is known — rank 0 may have to
    read it from the run directory first — and small CPU exchanges (rank 0's config and
    checkpoint, a step's figures) work in a CUDA run too.
    """
    info = WorldInfo.from_env()
    if info.world > 1 and not dist.is_initialized():
        backend = "gloo"
        if torch.cuda.is_available():
            if info.local_rank < torch.cuda.device_count():
                torch.cuda.set_device(info.local_rank)  # before NCCL picks one for this rank
            backend = "cpu:gloo,cuda:nccl"
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, 600)))
        dist.init_process_group(backend, timeout=timeout)
    return info


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def peer_guard(rank: int, world: int, resume_hint: str) -> Iterator[None]:
    """Turn a collective that failed because a peer died into a one-line error (exit 2).

    Without this the survivors print a gloo traceback; the launcher reports the rank that
    died first, so each survivor only says what it saw.
    """
    try:
        yield
    except (dist.DistError, RuntimeError) as exc:
        if not isinstance(exc, dist.DistError) and not _LOST.search(str(exc)):
            raise  # a bug, not a lost peer: keep its traceback
        text = _first_sentence(str(exc)) or type(exc).__name__
        raise PeerLost(f"rank {rank} of {world} lost contact with another worker ({text})",
                       None, resume_hint) from None


def _first_sentence(text: str) -> str:
    """`[.../pair.cc:537] Read error [127.0.0.1]:11160: Connection reset by peer. This is...`
    -> `Read error [127.0.0.1]:11160: Connection reset by peer`."""
    line = re.sub(r"^\[[^\]]*\]\s*", "", text.strip().splitlines()[0] if text.strip() else "")
    return line.split(". ")[0].rstrip(".")


def average_across_ranks(tensors: list[torch.Tensor], share: float | None = None) -> None:
    """Combine gradients in place across ranks with one flat all-reduce.

    `share` is this rank's fraction of the global batch (n_rank / n): the result is then
    Σ_r share_r · g_r, the gradient of the mean loss over the whole global batch, also when the
    batch does not split evenly. Without it, the plain mean over ranks.
    """
    if not active() or not tensors:
        return
    scale = (1.0 / dist.get_world_size()) if share is None else share
    flat = torch.cat([t.reshape(-1) for t in tensors]) * scale
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def sync_step(sums: list[float], buffers: list[torch.Tensor]) -> list[float]:
    """One all-reduce per step: `sums` summed over ranks, `buffers` averaged in place.

    The buffers are the BN running statistics. Each rank's running mean is an exponential
    average of its shard's batch means, and that average is linear, so averaging the buffers
    every step gives exactly the running mean a single process at the global batch would keep
    (the running variance is close, not equal, unless --sync-bn: it misses the spread of the
    shard means). It also keeps every rank's buffers identical, so evaluation and checkpoints
    agree on every rank.
    """
    if not active():
        return list(sums)
    device = buffers[0].device if buffers else torch.device("cpu")
    head = torch.tensor(sums, dtype=torch.float64, device=device)
    parts = [head] + [b.detach().reshape(-1).to(torch.float64) for b in buffers]
    flat = torch.cat(parts)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    world = dist.get_world_size()
    offset = len(sums)
    with torch.no_grad():
        for b in buffers:
            n = b.numel()
            b.copy_((flat[offset:offset + n] / world).view_as(b).to(b.dtype))
            offset += n
    return flat[:len(sums)].tolist()


def from_rank0(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its value (or its error) to every rank.

    Used for what touches the run directory before the search starts (creating it, reading
    config.json): rank 0 alone does it, so a multi-node run needs the directory only where rank
    0 runs, and a refusal (the directory exists, no --force) stops every rank with one
    message instead of a hang or N copies of it.
    """
    if not active():
        return fn()
    box: list[object] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except DascError as err:
            box[0] = ("error", err.message)
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]  # type: ignore[misc]
    if kind == "error":
        raise Quiet(f"rank 0 stopped: {value}", None, "see rank 0's message above")
    return value  # type: ignore[return-value]


class Quiet(UsageError):
    """A follower's copy of rank 0's error: rank 0 prints the diagnostic, the others a line."""


def die_hook(rank: int) -> Callable[[int], None]:
    """For the kill test: SIGKILL this worker after its N-th step when DASC_TEST_DIE_AT_STEP
    says `RANK:N` for this rank (a real kill: no cleanup, no exit handler, no message)."""
    spec = os.environ.get(DIE_ENV, "")
    target, _, step = spec.partition(":")
    if not spec or not target.isdigit() or int(target) != rank or not step.isdigit():
        return lambda _: None

    def check(steps_done: int) -> None:
        if steps_done >= int(step):
            os.kill(os.getpid(), signal.SIGKILL)

    return check


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def describe_failure(failures: dict) -> tuple[int, str]:
    """The rank to blame and what happened to it, from the launcher's failure records.

    A worker killed by a signal or crashing with a traceback is the cause; exit status 2 is a
    dasc diagnostic the worker already printed (a survivor saying it lost its peer, or a user
    error every rank hit), and SIGTERM is how the launcher stops the survivors. Timestamps are whole seconds, so they cannot order a kill and its
    consequences; the kind of failure can.
    """
    # the launcher stops the others with SIGTERM, which they may report as a stop (143)
    collateral = (2, -signal.SIGTERM, 128 + signal.SIGTERM, 128 + signal.SIGINT)

    def badness(item):
        rank, failure = item
        return (failure.exitcode in collateral, failure.timestamp, rank)

    rank, failure = min(failures.items(), key=badness)
    if failure.exitcode < 0:
        try:
            what = f"was killed by {signal.Signals(-failure.exitcode).name}"
        except ValueError:
            what = f"was killed by signal {-failure.exitcode}"
    else:
        what = f"exited with status {failure.exitcode}"
    return rank, what


class LaunchStopped(KeyboardInterrupt):
    """The launcher was stopped by `signum` (SIGINT or SIGTERM) and stopped its workers."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m dasc <argv>` in `nproc` local workers; any worker failing stops all.

    The elastic agent watches the workers: when one dies, it terminates the others (no hang in
    a collective) and reports the failure; `max_restarts=0` because a restarted worker could
    not rejoin a run whose other ranks are mid-epoch — the user resumes from the checkpoint.
    Returns 0, or 2 when every worker failed with a dasc diagnostic it already printed; a worker
    that died is a `WorkerFailed` naming its rank. The workers learn from PARENT_ENV that the
    parent prints the result, so rank 0 does not print it a second time.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise UsageError(f"--nproc must be at least 1, got {nproc}", None,
                         "use --nproc 2 for two worker processes")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=uuid.uuid4().hex[:8], rdzv_backend="c10d",
                          rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0,
                          monitor_interval=0.2, start_method="spawn")
    _quiet_launcher_logs()
    saved = {key: os.environ.get(key) for key in (PARENT_ENV, "OMP_NUM_THREADS")}
    os.environ[PARENT_ENV] = "1"
    # N workers each using every core would fight over them; torchrun does the same
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "dasc", *argv)
    except SignalException as stop:
        # Ctrl-C (or SIGTERM) reached the launcher, which passed it on to the workers and
        # waited for them: they stop together after a step and rank 0 saves it.
        raise LaunchStopped(int(stop.sigval)) from None
    except ChildFailedError as exc:
        failures = exc.failures
        codes = {f.exitcode for f in failures.values()}
        if codes == {2}:
            return 2  # a user error: the worker already printed its diagnostic
        stops = {128 + signal.SIGINT, 128 + signal.SIGTERM}
        # (a worker still starting or tearing down when the launcher stopped it: -SIGTERM)
        if codes & stops and codes <= stops | {-signal.SIGTERM}:
            # a signal reached the workers themselves (one of them, or their process group):
            # they stopped together after a step and rank 0 saved it, as when it reaches us
            raise LaunchStopped(signal.SIGTERM if 128 + signal.SIGTERM in codes
                                else signal.SIGINT) from None
        rank, what = describe_failure(failures)
        raise WorkerFailed(f"worker rank {rank} of {nproc} {what}; the other workers were stopped",
                           rank, "fix the cause shown above and run the command again") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return 0


def _quiet_launcher_logs() -> None:
    """The agent logs every start and stop at INFO/WARNING; dasc reports failures itself."""
    import logging

    # each elastic module sets its own logger's level when imported, so set them all
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher")):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def check_nproc_fits_batch(nproc: int, batch: int) -> None:
    """Every one of `nproc` processes needs an image of each global batch (batches are split
    `[rank::world]`); checked by the parent before it creates anything, since the workers would
    only find out after the output directory exists (search) or silently skip every batch
    (train)."""
    from dasc.errors import UsageError

    if nproc > batch:
        raise UsageError(f"--nproc {nproc} is more than the global batch of {batch} images, "
                         "which is split over the processes", None,
                         f"use --nproc {batch} or fewer, or a larger --batch-size: every "
                         "process needs at least one image of each batch")
