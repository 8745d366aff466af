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
    epochs: int

    @property
    def gap(self) -> float:
        """Accuracy lost by discretizing (positive: the derived network is worse)."""
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


def finish(searcher: Searcher) -> SearchOutcome:
    """Discretize the learnt α and write arch.json, plots and summary.json (rank 0 only)."""
    ir, gm, data = searcher.ir, searcher.model, searcher.data
    scores = gate_weights(gm) if searcher.alphas else {}
    mode = "sigmoid" if searcher.config.gate == "sigmoid" else "darts"
    arch = discretize(ir, scores, mode=mode, threshold=searcher.config.threshold)
    _, supernet_acc = searcher.evaluate(data.x_test, data.y_test)
    with pinned(gm, pinned_weights(ir, gm, arch)):
        _, derived_acc = searcher.evaluate(data.x_test, data.y_test)
    outcome = SearchOutcome(arch, supernet_acc, derived_acc, searcher.state.epoch)
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
            "discretization_gap": outcome.gap,
            "arch": "arch.json",
        })
    return outcome


def run_files(run_dir: Path) -> list[str]:
    """What a finished run directory holds (for tests and the summary line)."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
