"""Stopping a search or a training on a signal without losing it.

Ctrl-C and SIGTERM (how SLURM and Kubernetes pre-empt a job, then SIGKILL after a grace
period) become a flag checked between steps (`InterruptFlag`), so a step is never left half
done and a checkpoint can be written; elsewhere SIGTERM raises `Terminated` as Ctrl-C raises
KeyboardInterrupt (`sigterm_raises`). Both end as `Interrupted`, whose message says how to
resume and whose `status` is the exit status (128 + the signal).
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# The signals that stop a search at the next step boundary with a checkpoint: Ctrl-C, and the
# SIGTERM a batch scheduler (SLURM, Kubernetes) or `kill` sends before its SIGKILL.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptFlag:
    """Turns SIGINT and SIGTERM into a flag checked between steps, so no step is left half done."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def raised(self) -> bool:
        return self.signum is not None

    # Data-parallel ranks agree on stopping through one summed float: 1 per rank that saw
    # SIGINT, 1000 per rank that saw SIGTERM, so every rank also reports the same signal.
    @property
    def code(self) -> float:
        return 0.0 if self.signum is None else 1000.0 if self.signum == signal.SIGTERM else 1.0

    @staticmethod
    def decode(total: float) -> int | None:
        """The signal every rank stops for, from the sum of the ranks' `code`s."""
        return None if total <= 0 else signal.SIGTERM if total >= 1000 else signal.SIGINT

    def __enter__(self) -> "InterruptFlag":
        for signum in STOP_SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (tests): no handler
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:  # a second signal: the user (or the scheduler) insists
            raise Terminated(signum)
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:  # (not over a later SIG_IGN)
                signal.signal(signum, previous)  # type: ignore[arg-type]


class Terminated(KeyboardInterrupt):
    """A stopping signal that arrived where no step boundary is near (building the model, the
    final phase, a second signal): raised where Python is, as Ctrl-C raises KeyboardInterrupt,
    so the command can still say how to resume. `status` is the exit status (128 + signal)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = int(signum)
        self.status = 128 + self.signum


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While a search or training runs, SIGTERM raises `Terminated` instead of killing the
    process without a word (the step loop's `InterruptFlag` takes over inside the loop)."""
    def handle(signum, frame) -> None:
        raise Terminated(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread (tests): leave signals alone
        previous = None
    try:
        yield
    finally:
        # not over `ignore_stop_signals` of a stopped worker, still tearing down
        if previous is not None and signal.getsignal(signal.SIGTERM) is handle:
            signal.signal(signal.SIGTERM, previous)


def ignore_stop_signals() -> None:
    """For a worker that has stopped and saved: the launcher SIGTERMs the others as soon as one
    worker ends, and a signal landing in torch.distributed's teardown aborts the process."""
    for signum in STOP_SIGNALS:
        try:
            signal.signal(signum, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


def exit_stopped_worker(stopped: "Interrupted", speak: bool) -> None:
    """End a worker of a launched run that stopped on a signal: the one that `speak`s for the
    run (torchrun's rank 0; a `--nproc` parent says it itself) prints how to resume."""
    if speak:
        print(f"dasc: {stopped}", file=sys.stderr)
    ignore_stop_signals()
    raise SystemExit(stopped.status) from None


class Interrupted(KeyboardInterrupt):
    """A search or training stopped on Ctrl-C or SIGTERM, its progress saved.

    A KeyboardInterrupt, so the CLI prints its message, which says how to resume, and exits
    with `status`: 130 for Ctrl-C, 143 for SIGTERM (128 + the signal, as shells report a
    process the signal killed, so a scheduler's logs read the same).
    """

    def __init__(self, run_dir: Path, signum: int = signal.SIGINT, command: str = "search",
                 detail: str = "", advice: str | None = None) -> None:
        what = ("interrupted" if signum == signal.SIGINT
                else f"stopped by {signal.Signals(signum).name}")
        job = "search" if command == "search" else "training"
        advice = advice or f"resume with: dasc {command} --resume {run_dir}{detail}"
        super().__init__(f"{job} {what}; {advice}")
        self.run_dir = run_dir
        self.status = 128 + int(signum)
