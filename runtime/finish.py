"""The end of a search: discretize, measure the discretization gap, write arch.json and plots.

The derived network with inherited weights is evaluated by pinning the super-network's gates
to the chosen architecture (`FixedGate`): one-hot weights on kept edges, zeros on dropped
ones. That is exactly the derived network with the weights the search trained, without
building a second model, so the gap it reports is the one users worry about.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from dasc.compiler.arch import Arch
from dasc.compiler.discretize import discretize
from dasc.compiler.ir import IR, ChoiceNode, CombineNode
from dasc.runtime.gates import FixedGate
from dasc.runtime.latency import budget_rule
from dasc.runtime.lower import gate_weights
from dasc.runtime.plots import plot_alpha_history, plot_curves
from dasc.runtime.rundir import write_json
from dasc.runtime.search import Searcher


@dataclass(frozen=True)
class SearchOutcome:
    """The figures `dasc search` reports at the end."""

    arch: Arch
    supernet_acc: float
    derived_acc: float
    derived_acc_raw: float
    epochs: int

    @property
    def gap(self) -> float:
        """Accuracy lost by discretizing (positive: the derived network is worse).

        Measured after recalibrating BN statistics for the derived network: the running
        statistics the super-network gathered describe a mixture whose outputs are scaled by
        gate weights, not the one-hot network, and they alone can cost most of the accuracy
        (`derived_acc_raw` keeps that figure).
        """
        return self.supernet_acc - self.derived_acc


def pinned_weights(ir: IR, gm, arch: Arch) -> dict[str, torch.Tensor]:
    """One-hot gate weights per α key for `arch`; α keys of dropped edges get all zeros."""
    chosen = dict(arch.choices)
    kept = dict(arch.keeps)
    pinned: dict[str, torch.Tensor] = {}
    for key, info in gm.dasc.alphas.items():
        w = torch.zeros(len(info.candidates))
        if key in chosen:
            w[info.candidates.index(chosen[key])] = 1.0
        pinned[key] = w
    for _, node in ir.nodes():
        if isinstance(node, CombineNode) and node.select is not None:
            positions = set(kept.get(node.select, ()))
            for pos, src in enumerate(node.inputs):
                payload = ir.node(src)
                if pos not in positions and isinstance(payload, ChoiceNode):
                    pinned[payload.alpha] = torch.zeros_like(pinned[payload.alpha])
    return pinned


@contextmanager
def pinned(gm, weights: dict[str, torch.Tensor]):
    """Temporarily evaluate the super-network as one architecture."""
    original = gm.gate
    gm.gate = FixedGate(weights)
    hard = {name: m.hard for name, m in gm.named_modules() if hasattr(m, "hard")}
    for name, m in gm.named_modules():
        if hasattr(m, "hard"):
            m.hard = True
    try:
        yield gm
    finally:
        gm.gate = original
        for name, m in gm.named_modules():
            if name in hard:
                m.hard = hard[name]


@contextmanager
def kept_buffers(gm):
    """Restore every buffer (BN running statistics) afterwards."""
    saved = {name: buf.detach().clone() for name, buf in gm.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buf in gm.named_buffers():
                buf.copy_(saved[name])


def recalibrate_bn(searcher: Searcher, batch: int = 256) -> None:
    """Re-estimate BN running statistics of the pinned network on the weight-training half."""
    gm = searcher.model
    norms = [m for m in gm.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    gm.train()
    x = searcher.data.x_train[searcher.w_idx]
    with torch.no_grad():
        for start in range(0, len(x), batch):
            gm(torch.from_numpy(x[start:start + batch]).to(searcher.device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def finish(searcher: Searcher) -> SearchOutcome:
    """Discretize the learnt α and write arch.json, plots and summary.json (rank 0 only)."""
    ir, gm, data = searcher.ir, searcher.model, searcher.data
    scores = gate_weights(gm) if searcher.alphas else {}
    mode = "sigmoid" if searcher.config.gate == "sigmoid" else "darts"
    budget = budget_rule(ir, searcher.config)  # `budget = N`: refuse archs above it (exact)
    arch = discretize(ir, scores, mode=mode, threshold=searcher.config.threshold,
                      budget=budget)
    _, supernet_acc = searcher.evaluate(data.x_test, data.y_test)
    with pinned(gm, pinned_weights(ir, gm, arch)), kept_buffers(gm):
        _, derived_raw = searcher.evaluate(data.x_test, data.y_test)
        recalibrate_bn(searcher)
        _, derived_acc = searcher.evaluate(data.x_test, data.y_test)
    outcome = SearchOutcome(arch, supernet_acc, derived_acc, derived_raw, searcher.state.epoch)
    if searcher.parallel.main:
        run = searcher.run_dir
        write_json(run / "arch.json", arch.to_json(ir.name))
        candidates = {k: info.candidates for k, info in gm.dasc.alphas.items()}
        plot_alpha_history(searcher.state.alpha_history, candidates, run / "alpha.png")
        plot_curves(searcher.state.metrics, run / "curves.png")
        write_json(run / "summary.json", {
            "space": ir.name,
            "epochs": outcome.epochs,
            "supernet_test_acc": supernet_acc,
            "derived_test_acc_inherited": derived_acc,
            "derived_test_acc_inherited_raw_bn": derived_raw,
            "discretization_gap": outcome.gap,
            "arch": "arch.json",
        })
    return outcome


def run_files(run_dir: Path) -> list[str]:
    """What a finished run directory holds (for tests and the summary line)."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
