"""The bilevel loop on a hand-built IR: it learns, checkpoints, and resumes bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dasc.errors import NumericalError, UsageError
from dasc.runtime.config import SearchConfig, resolve_config
from dasc.runtime.data import Dataset
from dasc.runtime.rundir import prepare_run_dir
from dasc.runtime.search import Searcher

from test_lower import tiny_ir


def synthetic(n: int = 96, seed: int = 0) -> Dataset:
    """Three classes separable by the mean brightness of three image regions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, 0, :, label * 2:label * 2 + 3] += 1.5
    return Dataset("synthetic", x[: n * 3 // 4], y[: n * 3 // 4].astype(np.int64),
                   x[n * 3 // 4:], y[n * 3 // 4:].astype(np.int64))


def _searcher(tmp_path: Path, name: str, **overrides) -> Searcher:
    cfg = SearchConfig(epochs=3, batch_size=12, arch_lr=3e-2, **overrides)
    run = tmp_path / name
    prepare_run_dir(run, force=False, resume=False)
    return Searcher(tiny_ir(), synthetic(), cfg, run)


def _state(searcher: Searcher) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in searcher.model.state_dict().items()}


@pytest.mark.parametrize("order", [1, 2])
def test_search_reduces_validation_loss(tmp_path, order):
    s = _searcher(tmp_path, "run", order=order)
    s.run()
    losses = [m["val_loss"] for m in s.state.metrics]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    assert (tmp_path / "run" / "checkpoints" / "epoch_3.pt").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3


class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", [2, 7])
def test_resume_after_a_crash_is_bit_identical(tmp_path, crash_at):
    reference = _searcher(tmp_path, "ref")
    reference.run()

    crashing = _searcher(tmp_path, "crash")
    calls = {"n": 0}

    def crash(_):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise _Crash

    with pytest.raises(_Crash):
        crashing.run(progress=crash)
    resumed = Searcher(tiny_ir(), synthetic(), crashing.config, tmp_path / "crash")
    resumed.restore(tmp_path / "crash" / "checkpoints" / "last.pt")
    resumed.run()
    ref_state, res_state = _state(reference), _state(resumed)
    assert ref_state.keys() == res_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], res_state[key]), key
    assert reference.state.metrics == [
        {**m, "seconds": r["seconds"]} for m, r in zip(resumed.state.metrics, reference.state.metrics)]


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    s = _searcher(tmp_path, "nan", w_lr=1e30, grad_clip=0.0)
    with pytest.raises(NumericalError, match="became"):
        s.run()


def test_existing_run_dir_needs_force(tmp_path):
    run = tmp_path / "r"
    prepare_run_dir(run, force=False, resume=False)
    (run / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="already exists"):
        prepare_run_dir(run, force=False, resume=False)
    prepare_run_dir(run, force=True, resume=False)
    assert not (run / "config.json").exists()


def test_force_never_deletes_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match="refusing"):
        prepare_run_dir(tmp_path, force=True, resume=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_config_rejects_bad_values_with_hints():
    with pytest.raises(UsageError, match="unknown search setting `epoch`") as info:
        resolve_config((), {"epoch": 3})
    assert info.value.hint == "did you mean `epochs`?"
    with pytest.raises(UsageError, match="must be positive"):
        resolve_config((), {"epochs": -1})
    with pytest.raises(UsageError, match="cannot be 'argmax'"):
        resolve_config((), {"gate": "argmax"})
    assert resolve_config((), {"tau": 2.0}).tau_end == 2.0


def test_sigterm_raises_terminated_and_ranks_agree_on_the_signal():
    """Outside the step loop SIGTERM becomes an exception the command reports (exit 143);
    inside it, ranks sum their flags' codes and every rank decodes the same signal."""
    import os
    import signal

    from dasc.runtime.stopping import InterruptFlag, Terminated, sigterm_raises

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info:
        with sigterm_raises():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
    assert info.value.status == 143
    assert signal.getsignal(signal.SIGTERM) == before
    assert InterruptFlag.decode(0.0) is None
    assert InterruptFlag.decode(1.0) == InterruptFlag.decode(2.0) == signal.SIGINT
    assert InterruptFlag.decode(1001.0) == signal.SIGTERM
    with InterruptFlag() as flag:
        assert flag.code == 0.0
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        assert flag.signum == signal.SIGTERM and flag.code == 1000.0
        with pytest.raises(Terminated):  # a second signal stops at once
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass


def test_resume_of_a_run_directory_it_cannot_write_is_refused_up_front(tmp_path, monkeypatch):
    """Found before any compute, not at the first checkpoint an epoch later (os.access is
    stubbed: as root, as CI may run, permissions would not bite)."""
    import os

    run = tmp_path / "r"
    prepare_run_dir(run, force=False, resume=False)
    (run / "config.json").write_text("{}")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real(p, mode))
    with pytest.raises(UsageError, match="cannot write to"):
        prepare_run_dir(run, force=False, resume=True)
