"""Run a few real data-parallel search steps in N gloo processes (for tests and measurements).

`run_ranks(...)` spawns the ranks with torch.multiprocessing (each joins the group through the
same `init_from_env` the CLI uses, with the env:// variables a launcher would set) and
`single(...)` runs the one-process reference at the same global batch. Both return each
process's final state: model, α, optimizer states, and the losses of every step.

Rank 0 gets a real run directory; every other rank gets a path under /dev/null, where any
write fails, so a passing run proves that only rank 0 writes.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

SPACE = Path(__file__).resolve().parent.parent / "spaces" / "digits.das"
SMALL = {"C": 4, "layers": 2}


def config(order: int, batch: int = 32, **extra):
    """The digits space's own search settings (one epoch; `dataset` sets its length)."""
    from dasc.runtime.config import SearchConfig

    return SearchConfig(epochs=1, batch_size=batch, order=order, w_lr=0.05, arch_lr=0.003,
                        **extra)


def dataset(steps: int, batch: int):
    """The bundled digits, cut so that one epoch is `steps` global batches per half."""
    from dasc.runtime.data import Dataset, load_dataset

    d = load_dataset("digits")
    n = 2 * steps * batch
    return Dataset(d.name, d.x_train[:n], d.y_train[:n], d.x_test[:64], d.y_test[:64])


def _final_state(searcher, losses: list[dict]) -> dict:
    a_opt = searcher.a_opt.state_dict() if searcher.a_opt else {}
    return {"model": {k: v.detach().clone() for k, v in searcher.model.state_dict().items()},
            "alphas": [a.detach().clone() for a in searcher.alphas],
            "w_opt": searcher.w_opt.state_dict(), "a_opt": a_opt, "losses": losses}


def _search(cfg, steps: int, run_dir: Path, parallel, params: dict) -> dict:
    from dasc.compiler.pipeline import compile_space
    from dasc.runtime.search import Searcher

    ir = compile_space(str(SPACE), params)
    searcher = Searcher(ir, dataset(steps, cfg.batch_size), cfg, run_dir, parallel)
    losses: list[dict] = []
    searcher.run(progress=lambda info: losses.append({k: info[k] for k in ("loss", "val_loss")}))
    return _final_state(searcher, losses)


def single(cfg, steps: int, run_dir: Path, params: dict = SMALL) -> dict:
    from dasc.runtime.rundir import prepare_run_dir
    from dasc.runtime.search import Parallel

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    prepare_run_dir(run_dir, force=False, resume=False)
    return _search(cfg, steps, run_dir, Parallel(), params)


def _rank_main(rank: int, world: int, port: int, jobs: list, steps: int, out: str,
               params: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from dasc.runtime import distributed
    from dasc.runtime.rundir import prepare_run_dir
    from dasc.runtime.search import Parallel

    distributed.init_from_env()
    try:
        for name, cfg, sync in jobs:
            run_dir = Path(out) / name if rank == 0 else Path("/dev/null/not-a-dir")
            if rank == 0:
                prepare_run_dir(run_dir, force=False, resume=False)
            parallel = Parallel(rank, world, distributed.average_across_ranks,
                                distributed.sync_step, sync)
            state = _search(cfg, steps, run_dir, parallel, params)
            torch.save(state, Path(out) / f"{name}.rank{rank}.pt")
    finally:
        distributed.shutdown()


def run_ranks(world: int, jobs: list, steps: int, out: Path,
              params: dict = SMALL) -> dict[str, list[dict]]:
    """`jobs`: (name, SearchConfig, sync_bn) run one after the other in the same `world`
    processes (one start-up for all); returns each job's final state per rank."""
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out.mkdir(parents=True, exist_ok=True)
    mp.start_processes(_rank_main, (world, port, jobs, steps, str(out), params), nprocs=world,
                       start_method="spawn")
    return {name: [torch.load(out / f"{name}.rank{r}.pt", weights_only=False)
                   for r in range(world)] for name, _, _ in jobs}


def max_abs(a, b) -> float:
    """Largest absolute difference between two (nested) states' tensors."""
    if isinstance(a, torch.Tensor):
        return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    if isinstance(a, dict):
        return max((max_abs(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        return max((max_abs(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, float):
        return abs(a - b)
    return 0.0


def identical(a, b) -> bool:
    """Bit-for-bit equality of two (nested) states."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    return a == b
