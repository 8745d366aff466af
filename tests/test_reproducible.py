"""Same inputs, same seed, same bytes: across processes and Python hash seeds.

Why: a NAS result is only worth publishing if it can be reproduced; and a resumed search can
only be exact if the uninterrupted one is deterministic to begin with. Python randomises set and
dict-of-str iteration per process (PYTHONHASHSEED), so anything that leaks that order into an
IR, a file or an α key would make two runs of the same command disagree. Each check therefore
runs the real CLI in two processes with different hash seeds and compares the outputs byte for
byte (tensor for tensor for checkpoints); a different `--seed` must give a different search.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SMALL = ["--set", "C=4", "--set", "layers=2"]
SEARCH = ["search", "spaces/digits.das", "--data", "digits", "--epochs", "1", "--batch-size",
          "64", "--quiet", *SMALL]


def twice(argv_of, hash_seeds=("1", "2"), extra: dict | None = None) -> None:
    """Run `dasc argv_of(seed)` once per hash seed, concurrently; all must succeed."""
    procs = []
    for seed in hash_seeds:
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1",
               "PYTHONIOENCODING": "utf-8", **(extra or {})}
        procs.append(subprocess.Popen([sys.executable, "-m", "dasc", *argv_of(seed)], cwd=ROOT,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL))
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err.decode()[-3000:]


@pytest.mark.parametrize("space", ["darts.das", "nb201.das", "mobile.das"])
def test_compile_and_render_are_byte_identical_across_hash_seeds(tmp_path, space):
    def argv(seed):
        return ["compile", f"spaces/{space}", "--json", "-o", str(tmp_path / f"ir{seed}.json")]
    twice(argv)
    assert (tmp_path / "ir1.json").read_bytes() == (tmp_path / "ir2.json").read_bytes()
    twice(lambda seed: ["render", f"spaces/{space}", "-o", str(tmp_path / f"r{seed}.gv")])
    assert (tmp_path / "r1.gv").read_bytes() == (tmp_path / "r2.gv").read_bytes()


def _checkpoint(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _same_tensors(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def searches(tmp_path_factory) -> Path:
    """Two searches with --seed 0 under different hash seeds, and one with --seed 1."""
    base = tmp_path_factory.mktemp("repro")
    twice(lambda h: [*SEARCH, "--seed", "0", "-o", str(base / f"s0_h{h}")])
    twice(lambda h: [*SEARCH, "--seed", "1", "-o", str(base / "s1")], hash_seeds=("3",))
    return base


@pytest.mark.slow
def test_search_is_bit_identical_for_the_same_seed(searches):
    a, b = searches / "s0_h1", searches / "s0_h2"
    for name in ("alpha_history.json", "arch.json", "summary.json", "config.json"):
        left, right = (a / name).read_text(), (b / name).read_text()
        assert left.replace(str(a), "RUN") == right.replace(str(b), "RUN"), name
    assert _same_tensors(_checkpoint(a / "checkpoints" / "last.pt")["model"],
                         _checkpoint(b / "checkpoints" / "last.pt")["model"])


@pytest.mark.slow
def test_another_seed_gives_another_search(searches):
    a = json.loads((searches / "s0_h1" / "alpha_history.json").read_text())
    b = json.loads((searches / "s1" / "alpha_history.json").read_text())
    assert a != b


@pytest.mark.slow
def test_train_and_export_are_reproducible(searches, tmp_path):
    """The derived network trained twice from the same seed, then exported twice."""
    arch = str(searches / "s0_h1" / "arch.json")
    twice(lambda h: ["train", "spaces/digits.das", *SMALL, "--arch", arch, "--data", "digits",
                     "--epochs", "1", "--seed", "0", "--quiet", "-o", str(tmp_path / f"t{h}")])
    t1, t2 = tmp_path / "t1", tmp_path / "t2"
    assert _same_tensors(_checkpoint(t1 / "last.pt")["model"], _checkpoint(t2 / "last.pt")["model"])
    drop = ("seconds", "time")
    m1, m2 = ([{k: v for k, v in json.loads(line).items() if k not in drop}
               for line in (t / "metrics.jsonl").read_text().splitlines()] for t in (t1, t2))
    assert m1 == m2
    twice(lambda h: ["export", "spaces/digits.das", *SMALL, "--arch", arch, "--weights",
                     str(t1 / "best.pt"), "-o", str(tmp_path / f"m{h}.onnx")])
    assert (tmp_path / "m1.onnx").read_bytes() == (tmp_path / "m2.onnx").read_bytes()
