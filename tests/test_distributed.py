"""Data-parallel search and training on torch.distributed, for real: 2 gloo processes on CPU.

What is proved here, and the tolerances (measured figures in docs/distributed.md):
* after a few first- and second-order steps every rank holds bit-identical α, weights, BN
  statistics and optimizer states;
* with --sync-bn the 2-process run follows the 1-process run at the same global batch to
  1e-5 (measured ≤ 1e-7), also for a batch that does not split evenly (31 = 16 + 15);
  without it, BN normalises per shard, and the losses stay within 0.02 (measured ≤ 0.004);
* only rank 0 writes (the other ranks' run directory is a path where any write fails);
* `--nproc 2` prints one result; a worker killed mid-epoch ends the run with exit 2 and a
  message naming its rank, and `--resume` continues on a different number of processes.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

import dist_helpers as h
from conftest import run_dasc

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is needed")

STEPS = 2
SMALL_CLI = ("--set", "C=4", "--set", "layers=2", "--batch-size", "128", "--epochs", "1")
JOBS = [("o1", h.config(1), False), ("o2", h.config(2), False),
        ("o1_sync_uneven", h.config(1, batch=31), True), ("o2_sync", h.config(2), True)]
KEYS = ("model", "alphas", "w_opt", "a_opt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every job in one pair of gloo processes (one start-up), and the 1-process references."""
    out = tmp_path_factory.mktemp("dist")
    ranks = h.run_ranks(2, JOBS, STEPS, out / "dp")
    torch.set_num_threads(1)
    singles = {}
    for name, cfg, _ in JOBS:
        key = (cfg.order, cfg.batch_size)
        if key not in singles:
            singles[key] = h.single(cfg, STEPS, out / f"single_o{cfg.order}_b{cfg.batch_size}")
    refs = {name: singles[(cfg.order, cfg.batch_size)] for name, cfg, _ in JOBS}
    return SimpleNamespace(out=out, ranks=ranks, refs=refs)


@pytest.mark.parametrize("job", [name for name, _, _ in JOBS])
def test_every_rank_holds_the_same_state(runs, job):
    r0, r1 = runs.ranks[job]
    for key in KEYS:
        assert h.identical(r0[key], r1[key]), f"{key} differs between ranks"
    assert r0["losses"] == r1["losses"]  # the reported figures are the global batch's
    assert len(r0["losses"]) == STEPS


@pytest.mark.parametrize("job", ["o1_sync_uneven", "o2_sync"])
def test_sync_bn_follows_the_single_process_run(runs, job):
    ref, got = runs.refs[job], runs.ranks[job][0]
    assert h.max_abs(got["alphas"], ref["alphas"]) < 1e-5
    assert h.max_abs(got["model"], ref["model"]) < 1e-5  # weights and BN statistics
    assert h.max_abs(got["w_opt"], ref["w_opt"]) < 1e-5
    for a, b in zip(got["losses"], ref["losses"]):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["val_loss"] - b["val_loss"]) < 1e-5


@pytest.mark.parametrize("job", ["o1", "o2"])
def test_per_rank_bn_stays_close_to_the_single_process_run(runs, job):
    """Per-shard BN statistics are the one difference; the losses barely move."""
    ref, got = runs.refs[job], runs.ranks[job][0]
    for a, b in zip(got["losses"], ref["losses"]):
        assert abs(a["loss"] - b["loss"]) < 0.02 and abs(a["val_loss"] - b["val_loss"]) < 0.02
    # Adam's first steps move each α by about ±arch_lr whatever the gradient's size, so an α
    # whose gradient is near zero may step the other way; never further than that
    bound = 2 * JOBS[0][1].arch_lr * STEPS + 1e-6
    assert h.max_abs(got["alphas"], ref["alphas"]) <= bound


def test_only_rank_0_wrote_the_run_directory(runs):
    run = runs.out / "dp" / "o2"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["epoch"] == 1
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "epoch_1.pt"}
    # rank 1 ran the same epoch (end-of-epoch evaluation and saves included) with a run
    # directory under /dev/null: had it written anything, it would have raised


def _stdout_json(text: str) -> dict:
    return json.loads(text)  # exactly one JSON document, or this raises


def test_a_killed_worker_stops_the_run_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    env = {"DASC_TEST_DIE_AT_STEP": "1:3", "DASC_SAVE_EVERY": "0", "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    res = run_dasc("search", "spaces/digits.das", "--data", "digits", *SMALL_CLI,
                   "--nproc", "2", "--quiet", "-o", str(run), env=env, timeout=600)
    assert res.returncode == 2, res.stderr
    assert "worker rank 1 of 2 was killed by SIGKILL" in res.stderr
    assert "Traceback" not in res.stderr
    # rank 0 saved after each step; it got at least to step 2 before rank 1 died after step 3
    assert ("(epoch 1, step 2)" in res.stderr) or ("(epoch 1, step 3)" in res.stderr), res.stderr
    assert f"dasc search --resume {run}" in res.stderr
    assert time.monotonic() - started < 300  # never a hang
    assert not (run / "summary.json").exists()

    res = run_dasc("search", "--resume", str(run), "--nproc", "1", "--json",
                   env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = _stdout_json(res.stdout)
    assert summary["processes"] == 1 and summary["epochs"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run / "arch.json").is_file()


def test_sigterm_to_the_nproc_parent_stops_every_worker_after_a_step_and_saves(tmp_path):
    """What a scheduler does to pre-empt a job: the parent forwards SIGTERM, the ranks agree
    on the step to stop after, rank 0 saves it, the parent exits 143 saying how to resume."""
    run = tmp_path / "run"
    proc = _nproc_2_search_past_its_first_step(run)
    last = run / "checkpoints" / "last.pt"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    err = err.decode()
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"dasc: search stopped by SIGTERM; resume with: dasc search --resume {run}")
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["step"]) > (0, 1)
    assert not (run / "summary.json").exists()

    res = run_dasc("search", "--resume", str(run), "--nproc", "1", "--json",
                   env={"OMP_NUM_THREADS": "1"}, timeout=600)
    assert res.returncode == 0, res.stderr
    assert _stdout_json(res.stdout)["epochs"] == 3


def test_sigterm_to_one_worker_stops_the_run_as_a_stop_not_a_failure(tmp_path):
    """A scheduler may signal the workers rather than the launcher: the signalled rank's flag
    reaches the other through the step's all-reduce, both stop after the same step, and the
    parent reports the stop (exit 143), not a failed worker."""
    import os

    run = tmp_path / "run"
    proc = _nproc_2_search_past_its_first_step(run)
    workers = _dasc_children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    err = err.decode()
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"dasc: search stopped by SIGTERM; resume with: dasc search --resume {run}")
    assert "Traceback" not in err and "worker rank" not in err


def _dasc_children(pid: int) -> list[int]:
    """The `python -m dasc` processes under `pid` (the launcher's workers), oldest first."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid \
                and b"-m dasc" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def _nproc_2_search_past_its_first_step(run: Path):
    """A 3-epoch `--nproc 2` search into `run`, returned once rank 0 has checkpointed a step
    (DASC_SAVE_EVERY=0: after every step), so both workers are in the step loop."""
    import os
    import subprocess

    from conftest import ROOT

    env = {**os.environ, "DASC_SAVE_EVERY": "0", "OMP_NUM_THREADS": "1",
           "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.Popen([sys.executable, "-m", "dasc", "search", "spaces/digits.das",
                             "--data", "digits", *SMALL_CLI, "--epochs", "3", "--nproc", "2",
                             "--quiet", "-o", str(run)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not _past_first_step(run / "checkpoints" / "last.pt"):
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "no step was checkpointed"
        time.sleep(0.05)
    return proc


def _past_first_step(checkpoint: Path) -> bool:
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError):  # not there yet (it is replaced atomically)
        return False
    return (state["epoch"], state["step"]) >= (0, 1)


def test_nproc_2_search_prints_one_result_and_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    res = run_dasc("search", "spaces/digits.das", "--data", "digits", *SMALL_CLI, "--nproc", "2",
                   "--sync-bn", "--json", "-o", str(run), timeout=600)
    assert res.returncode == 0, res.stderr
    summary = _stdout_json(res.stdout)
    assert summary["processes"] == 2 and summary["run_dir"] == str(run)
    for name in ("config.json", "metrics.jsonl", "alpha_history.json", "arch.json", "alpha.png",
                 "curves.png", "summary.json", "checkpoints/last.pt", "checkpoints/epoch_1.pt"):
        assert (run / name).is_file(), name
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    record = json.loads((run / "config.json").read_text())
    assert record["request"]["nproc"] == 2 and record["request"]["sync_bn"] is True


@pytest.mark.slow
def test_torchrun_runs_the_same_command(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    import subprocess

    run = tmp_path / "run"
    cmd = [torchrun, "--nproc-per-node", "2", "-m", "dasc", "search", "spaces/digits.das",
           "--data", "digits", *SMALL_CLI, "--quiet", "-o", str(run)]
    done = subprocess.run(cmd, cwd=h.SPACE.parent.parent, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("search of digits finished") == 1  # rank 0 only
    assert "(2 processes)" in done.stdout
    again = subprocess.run(cmd, cwd=h.SPACE.parent.parent, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode != 0  # rank 0 refuses the existing directory; rank 1 follows
    assert "already exists" in again.stderr


@pytest.mark.slow
def test_nproc_2_training_writes_once(tmp_path):
    arch = tmp_path / "arch.json"
    search = run_dasc("search", "spaces/digits.das", "--data", "digits", *SMALL_CLI, "--quiet",
                      "-o", str(tmp_path / "s"), env={"OMP_NUM_THREADS": "1"})
    assert search.returncode == 0, search.stderr
    shutil.copy(tmp_path / "s" / "arch.json", arch)
    res = run_dasc("train", "spaces/digits.das", "--set", "C=4", "--set", "layers=2", "--arch",
                   str(arch), "--data", "digits", "--epochs", "2", "--nproc", "2", "--json",
                   "-o", str(tmp_path / "t"), timeout=600)
    assert res.returncode == 0, res.stderr
    out = _stdout_json(res.stdout)
    assert out["processes"] == 2 and out["epochs"] == 2
    assert len((tmp_path / "t" / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["processes"] == 2
    # rank 0 writes config.json without the flag: `train --resume` must still use 2 processes
    assert json.loads((tmp_path / "t" / "config.json").read_text())["request"]["nproc"] == 2


# ----------------------------------------------------------------------------- no processes


def test_the_rank_that_died_is_named_not_the_ones_the_launcher_stopped():
    from dasc.runtime.distributed import describe_failure

    def failure(code, ts=100):
        return SimpleNamespace(exitcode=code, timestamp=ts)

    assert describe_failure({0: failure(-signal.SIGTERM), 1: failure(-signal.SIGKILL)}) == \
        (1, "was killed by SIGKILL")
    assert describe_failure({0: failure(2), 1: failure(1, 101)}) == (1, "exited with status 1")


def test_die_hook_only_fires_for_its_rank(monkeypatch):
    from dasc.runtime import distributed

    monkeypatch.setenv(distributed.DIE_ENV, "1:3")
    killed = []
    monkeypatch.setattr(distributed.os, "kill", lambda pid, sig: killed.append(sig))
    distributed.die_hook(0)(5)
    hook = distributed.die_hook(1)
    hook(2)
    assert killed == []
    hook(3)
    assert killed == [signal.SIGKILL]


def test_shares_weight_each_rank_by_its_part_of_the_global_batch():
    from dasc.runtime.search import Parallel

    seen = []
    par = Parallel(1, 2, lambda tensors, share: seen.append(share))
    par.reducer(15, 31)([torch.zeros(1)])
    assert seen == [15 / 31]
    assert Parallel().reducer(7, 7) is not None  # one process: nothing to combine


def test_global_batch_norm_is_plain_batch_norm_in_one_process():
    from dasc.runtime import sync_bn

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    converted = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    converted.load_state_dict(plain.state_dict())
    assert sync_bn.convert(converted) == 1
    x = torch.randn(4, 1, 6, 6)
    assert torch.equal(plain(x), converted(x))
    sync_bn.revert(converted)
    assert type(converted[1]) is torch.nn.BatchNorm2d


def test_nproc_must_be_positive():
    res = run_dasc("search", "spaces/digits.das", "--data", "digits", "--nproc", "0", "-o",
                   "/tmp/never-created-by-dasc-tests")
    assert res.returncode == 2 and "--nproc must be at least 1" in res.stderr
