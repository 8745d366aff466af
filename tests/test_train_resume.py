"""`dasc train --resume TRAIN_DIR` ends with the same bits as a training that never stopped.

Why: a retraining is as long as the search before it (DARTS retrains for 600 epochs), and a
pre-empted node or a kill must not cost it. One uninterrupted reference, and one chain through
the real CLI: SIGKILL in epoch 3 (resume from the end of epoch 2), SIGTERM a few steps after
the resume (exit 143, resume from the last finished epoch), then a resume to the end with the
space file deleted (config.json holds its text) and a stale temporary of a torn write. Compared: both checkpoints' models, the
optimizer's momentum, the schedule, the metrics and the summary. On CPU with one thread.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_dasc

pytestmark = pytest.mark.slow

ENV = {"OMP_NUM_THREADS": "1"}
SMALL = ["--set", "C=4", "--set", "layers=2"]


@pytest.fixture(scope="module")
def arch(tmp_path_factory) -> Path:
    """An architecture of the small digits space, from a one-epoch search."""
    run = tmp_path_factory.mktemp("search") / "run"
    res = run_dasc("search", "spaces/digits.das", *SMALL, "--data", "digits", "--epochs", "1",
                   "--batch-size", "64", "--quiet", "-o", str(run), env=ENV)
    assert res.returncode == 0, res.stderr
    return run / "arch.json"


def _train_argv(space: Path, arch: Path, out: Path) -> list[str]:
    return ["train", str(space), *SMALL, "--arch", str(arch), "--data", "digits", "--epochs",
            "6", "--seed", "3", "--quiet", "-o", str(out)]


def _outcome(out: Path) -> dict:
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    summary = json.loads((out / "summary.json").read_text())
    for volatile in ("seconds", "out_dir", "space_file"):
        summary.pop(volatile)
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"best": best["model"], "last": last["model"], "best_epoch": best["epoch"],
            "momentum": {k: v["momentum_buffer"]
                         for k, v in last["resume"]["opt"]["state"].items()},
            "sched": last["resume"]["sched"], "summary": summary, "metrics": metrics}


def _assert_same(got: dict, want: dict) -> None:
    for key in ("best_epoch", "sched", "summary", "metrics"):
        assert got[key] == want[key], key
    for group in ("best", "last", "momentum"):
        assert got[group].keys() == want[group].keys()
        for name, tensor in want[group].items():
            assert torch.equal(got[group][name], tensor), f"{group} {name}"


def _resume(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dasc", "train", "--resume", str(out), "--quiet"],
                          cwd=ROOT, env={**os.environ, **ENV}, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


def test_killed_and_terminated_training_resumes_bit_identical(tmp_path, arch):
    space = tmp_path / "digits.das"
    shutil.copy(ROOT / "spaces" / "digits.das", space)
    ref = run_dasc(*_train_argv(space, arch, tmp_path / "ref"), env=ENV)
    assert ref.returncode == 0, ref.stderr

    out = tmp_path / "run"
    # 21 steps an epoch: step 50 is in epoch 3
    killed = run_dasc(*_train_argv(space, arch, out), env={**ENV, "DASC_TEST_DIE_AT_STEP": "0:50"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2
    assert not (out / "summary.json").exists()

    proc = subprocess.Popen([sys.executable, "-m", "dasc", "train", "--resume", str(out),
                             "--quiet"], cwd=ROOT, env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    before = (out / "last.pt").stat().st_ino
    deadline = time.monotonic() + 300
    while (out / "last.pt").stat().st_ino == before:  # epoch 3 done: now in epoch 4
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err.decode()[-3000:]
    last_line = err.decode().strip().splitlines()[-1]
    epoch = torch.load(out / "last.pt", weights_only=True)["epoch"]
    assert last_line == (f"dasc: training stopped by SIGTERM; resume with: dasc train --resume "
                         f"{out} (from the end of epoch {epoch})")
    assert 3 <= epoch < 6

    space.unlink()  # the text in config.json is what a resume compiles
    (out / ".last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # a kill mid-write
    res = _resume(out)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
    _assert_same(_outcome(out), _outcome(tmp_path / "ref"))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_training_killed_before_its_first_epoch_resumes_from_the_start(tmp_path, arch):
    out = tmp_path / "run"
    argv = _train_argv(ROOT / "spaces" / "digits.das", arch, out)
    killed = run_dasc(*argv, env={**ENV, "DASC_TEST_DIE_AT_STEP": "0:3"})
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "last.pt").exists()
    res = _resume(out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6


def test_a_training_from_inherited_weights_killed_before_its_first_epoch_inherits_again(
        tmp_path, arch):
    """No last.pt yet: the resume must start from the same search weights, not a fresh init."""
    run = arch.parent
    argv = [*_train_argv(ROOT / "spaces" / "digits.das", arch, tmp_path / "ref"), "--weights",
            str(run)]
    argv[argv.index("6")] = "2"  # two epochs are enough to tell the starts apart
    ref = run_dasc(*argv, env=ENV)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    argv[argv.index("-o") + 1] = str(out)
    killed = run_dasc(*argv, env={**ENV, "DASC_TEST_DIE_AT_STEP": "0:3"})
    assert killed.returncode == -signal.SIGKILL and not (out / "last.pt").exists()
    res = _resume(out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "tensors inherited" in res.stdout
    got, want = _outcome(out), _outcome(tmp_path / "ref")
    _assert_same(got, want)
