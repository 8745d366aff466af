"""Interrupted searches resume exactly: real `dasc search` processes killed and resumed.

Why: a search costs hours of accelerator time, and the process running it can die at any
moment (an OOM kill, a pre-empted node, a closed laptop). The promise is that `kill -9` at any
point followed by `dasc search --resume RUN_DIR` ends with the same α, weights and arch.json,
bit for bit, as a run that was never interrupted; that Ctrl-C saves a checkpoint and says how
to resume; and that no kill leaves a truncated file for a later command to trip over.

One uninterrupted reference run, and one chain of runs stopped at seven moments (SIGKILL after
config.json but before any checkpoint, SIGKILL right after the first checkpoint, Ctrl-C in
epoch 1, SIGTERM a step later, SIGKILL mid-epoch 2, SIGKILL during the final phase, and a stale
temporary file from a write that never finished), each followed by `--resume`. On CPU with one thread, where results
are exact; the reference runs concurrently with the chain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_dasc

pytestmark = pytest.mark.slow

ARGS = ["--data", "digits", "--epochs", "2", "--seed", "0", "--set", "C=4", "--set", "layers=2",
        "--batch-size", "64", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
KILL_POINTS: list[str] = []


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`dasc ARGS` in the background, with Ctrl-C delivered as in a terminal."""
    return subprocess.Popen([sys.executable, "-m", "dasc", *args], cwd=ROOT,
                            env={**ENV, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    """Poll every 20 ms until `ready()`; fail if the process ends first."""
    limit = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"dasc ended (status {proc.returncode}) before {what}:\n{err.decode()[-3000:]}")
        assert time.monotonic() < limit, f"timed out waiting for {what}"
        time.sleep(0.02)


def rewritten(path: Path):
    """A readiness test: `path` was (re)written since now; an atomic write is a new inode."""
    before = path.stat().st_ino if path.exists() else None
    return lambda: path.exists() and path.stat().st_ino != before


def kill(proc: subprocess.Popen, label: str) -> None:
    """SIGKILL; the kill only counts if the process was still running when it landed."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"{label}: the process had already finished"
    KILL_POINTS.append(label)


def resume(run: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return start("search", "--resume", str(run), "--quiet", env=env)


def stop(proc: subprocess.Popen, signum: int, status: int, said: str, run: Path,
         before: tuple[int, int]) -> tuple[int, int]:
    """Send a stopping signal in the step loop: the process must save a checkpoint past
    `before`, print how to resume, and exit with `status`; returns the checkpoint's position."""
    import torch

    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    err = err.decode()
    assert proc.returncode == status, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"dasc: search {said}; resume with: dasc search --resume {run}")
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert (state["epoch"], state["step"]) > before, f"{signal.Signals(signum).name}: no checkpoint"
    return state["epoch"], state["step"]


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "Traceback" not in err.decode()
    return out.decode()


def assert_intact(run: Path) -> None:
    """No temporaries left, and every file that exists is complete and readable."""
    import torch

    leftovers = [p.name for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    for path in run.rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        elif path.suffix == ".pt":
            torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix == ".png":
            data = path.read_bytes()
            assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), path


def outcome(run: Path) -> dict:
    """What must be bit-identical: α history, arch.json, the final weights and optimizer
    states, and the figures (metrics without their wall-clock seconds)."""
    import torch

    last = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"alpha": (run / "alpha_history.json").read_text(),
            "arch": (run / "arch.json").read_text(), "summary": (run / "summary.json").read_text(),
            "metrics": metrics, "model": last["model"], "w_opt": last["w_opt"],
            "a_opt": last["a_opt"], "position": (last["epoch"], last["step"])}


def assert_same(got: dict, want: dict) -> None:
    import torch

    for key in ("alpha", "arch", "summary", "metrics", "position"):
        assert got[key] == want[key], f"{key} differs from the uninterrupted run"
    assert got["model"].keys() == want["model"].keys()
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), f"weight {name} differs"
    for opt in ("w_opt", "a_opt"):
        for pid, state in want[opt].get("state", {}).items():
            for k, v in state.items():
                other = got[opt]["state"][pid][k]
                assert torch.equal(other, v) if torch.is_tensor(v) else other == v, f"{opt} {k}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run; started at once so it overlaps the first kills on 2 cores."""
    run = tmp_path_factory.mktemp("ref") / "run"
    proc = start("search", "spaces/digits.das", *ARGS, "-o", str(run))
    yield lambda: (finish(proc), outcome(run))[1]
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_killed_at_every_stage_and_interrupted_then_resumed_is_bit_identical(reference, tmp_path):
    """One chain, so each stage's restart cost is paid once: every interruption is followed
    by `--resume`, and only the end result is compared (an inexact resume anywhere shows)."""
    run = tmp_path / "run"
    ckpt = run / "checkpoints"

    proc = start("search", "spaces/digits.das", *ARGS, "-o", str(run))
    wait_for(proc, lambda: (run / "config.json").is_file(), "config.json")
    kill(proc, "before the first checkpoint" if not (ckpt / "last.pt").exists()
         else "at the first checkpoint (the machine was quick)")
    assert_intact(run)

    proc = resume(run)
    wait_for(proc, rewritten(ckpt / "last.pt"), "the first checkpoint")
    kill(proc, "right after the first checkpoint")
    assert_intact(run)

    # Ctrl-C in the step loop: a checkpoint at the next step boundary, exit 130, the command.
    proc = resume(run)
    wait_for(proc, rewritten(ckpt / "last.pt"), "the loop's first checkpoint")
    time.sleep(1.0)
    before = stop(proc, signal.SIGINT, 130, "interrupted", run, (0, 0))
    KILL_POINTS.append(f"Ctrl-C (exit 130; checkpoint at epoch {before[0] + 1}, "
                       f"step {before[1]})")
    assert_intact(run)

    # SIGTERM (a scheduler pre-empting the job) stops the same way, exit 143. With a
    # checkpoint after every step, which must not change the result either.
    proc = resume(run, {"DASC_SAVE_EVERY": "0"})
    wait_for(proc, rewritten(ckpt / "last.pt"), "a step after the resume")
    at = stop(proc, signal.SIGTERM, 143, "stopped by SIGTERM", run, before)
    KILL_POINTS.append(f"SIGTERM (exit 143; checkpoint at epoch {at[0] + 1}, step {at[1]})")
    assert_intact(run)

    proc = resume(run)
    wait_for(proc, lambda: (ckpt / "epoch_1.pt").is_file(), "the end of epoch 1")
    time.sleep(1.0)
    kill(proc, "in the middle of epoch 2")
    assert_intact(run)

    proc = resume(run)
    wait_for(proc, lambda: (ckpt / "epoch_2.pt").is_file(), "the end of the last epoch")
    kill(proc, "during the final phase (discretize, BN recalibration, arch.json, plots)")
    assert_intact(run)

    # A kill in the middle of an atomic write leaves its temporary beside the intact file;
    # and config.json holds absolute paths, so the last resume runs from another directory.
    (ckpt / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    KILL_POINTS.append("mid-write (a stale temporary), resumed from another directory")
    res = run_dasc("search", "--resume", str(run), "--quiet", cwd=tmp_path, env=ENV)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert_intact(run)
    assert_same(outcome(run), reference())


def test_zz_kill_points(capsys):
    with capsys.disabled():
        print(f"\nkill/resume: {len(KILL_POINTS)} interruptions, each resumed, result "
              "bit-identical: " + "; ".join(KILL_POINTS))
