"""`dasc search`: the bilevel loop over a lowered super-network, resumable to the bit.

Exact resumption rests on three choices: the data order of an epoch is a pure function of
(seed, epoch), every checkpoint holds the RNG state and optimizer states at a step boundary,
and a Ctrl-C is only acted on between steps. So a run killed at any moment and resumed from
its last checkpoint replays the same steps with the same numbers.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from dasc.compiler.budget import UNIT
from dasc.compiler.ir import IR
from dasc.errors import NumericalError, Span, UsageError
from dasc.runtime import bilevel
from dasc.runtime.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from dasc.runtime.config import SearchConfig
from dasc.runtime.data import Dataset
from dasc.runtime.gates import Schedule
from dasc.runtime.stopping import InterruptFlag, Interrupted, ignore_stop_signals
from dasc.runtime.lower import (LoweringOptions, arch_parameters, gate_weights, lower,
                                weight_parameters)
from dasc.runtime.regularizers import make_penalty
from dasc.runtime.rundir import append_jsonl, write_json


def _local_sync(sums: list[float], buffers: list[torch.Tensor]) -> list[float]:
    """Single process: the step's sums are already global, the buffers already agree."""
    return list(sums)


@dataclass(frozen=True)
class Parallel:
    """This process's place in a data-parallel run (single process: rank 0 of 1).

    `reduce(tensors, share)` combines gradients over ranks, each rank's weighted by its share of
    the global batch; `sync(sums, buffers)` sums a step's figures over ranks and averages the BN
    running statistics (runtime/distributed.py). `sync_bn` normalises over the global batch.
    """

    rank: int = 0
    world: int = 1
    reduce: Callable[..., None] = bilevel._no_reduce
    sync: Callable[[list[float], list[torch.Tensor]], list[float]] = _local_sync
    sync_bn: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def reducer(self, local: int, total: int) -> bilevel.Reducer:
        """The reduce of one step whose rank shard holds `local` of `total` examples."""
        if self.world == 1:
            return bilevel._no_reduce
        share = local / total
        return lambda tensors: self.reduce(tensors, share)


# Seconds between mid-epoch checkpoints (also at every epoch end and on Ctrl-C).
SAVE_EVERY_ENV = "DASC_SAVE_EVERY"


@dataclass
class SearchState:
    """Everything needed to continue: position, histories, running epoch sums."""

    epoch: int = 0
    step: int = 0
    metrics: list[dict] = field(default_factory=list)
    alpha_history: list[dict] = field(default_factory=list)
    running: dict = field(default_factory=lambda: {"loss": 0.0, "val_loss": 0.0, "correct": 0,
                                                    "seen": 0, "steps": 0})


def split_indices(n: int, portion: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The weight half and the architecture half of the training data (DARTS: 50/50)."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * portion))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def epoch_order(indices: np.ndarray, seed: int, epoch: int, salt: int) -> np.ndarray:
    """A pure function of (seed, epoch): the key to replaying an epoch after a crash."""
    rng = np.random.default_rng([seed, epoch, salt])
    return indices[rng.permutation(len(indices))]


class Searcher:
    """Owns the super-network, the optimizers and the run directory of one search."""

    def __init__(self, ir: IR, data: Dataset, config: SearchConfig, run_dir: Path,
                 parallel: Parallel = Parallel(), meta: dict | None = None) -> None:
        self.ir, self.data, self.config, self.run_dir = ir, data, config, run_dir
        self.parallel = parallel
        self.meta = meta or {}
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.model = lower(ir, LoweringOptions(
            gate=config.gate, tau=config.tau, partial_channels=config.partial_channels,
            channels_last=bool(config.channels_last), checkpoint=bool(config.checkpoint),
            recompute_pointwise=bool(config.recompute_pointwise)))
        self.model.to(self.device)
        if parallel.sync_bn and parallel.world > 1:
            from dasc.runtime import sync_bn

            sync_bn.convert(self.model)
        self.bn_buffers = _running_stats(self.model)
        self.alphas = arch_parameters(self.model)
        self.weights = weight_parameters(self.model)
        self.penalty = make_penalty(self.model, ir, config).to(self.device)
        self.w_opt = torch.optim.SGD(self.weights, config.w_lr, momentum=config.w_momentum,
                                     weight_decay=config.w_weight_decay)
        self.w_sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.w_opt, float(config.epochs), eta_min=config.w_lr_min)
        self.a_opt = torch.optim.Adam(self.alphas, lr=config.arch_lr, betas=(0.5, 0.999),
                                      weight_decay=config.arch_weight_decay) if self.alphas else None
        self.schedule = Schedule(config.schedule, config.tau, config.tau_end)
        self.w_idx, self.a_idx = split_indices(len(data.x_train), config.train_portion, config.seed)
        self.state = SearchState()
        self.fingerprint = fingerprint(ir)
        self.save_every = float(os.environ.get(SAVE_EVERY_ENV, 600))
        self._saved_at = time.monotonic()
        self.parts = bilevel.StepParts(self.model, self.weights, self.alphas, self.penalty,
                                       parallel.reduce)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "model": self.model.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "w_sched": self.w_sched.state_dict(),
            "a_opt": self.a_opt.state_dict() if self.a_opt else {},
            "rng": torch.get_rng_state(),
            "epoch": self.state.epoch,
            "step": self.state.step,
            "metrics": self.state.metrics,
            "alpha_history": self.state.alpha_history,
            "running": self.state.running,
            "config": self.config.to_json(),
        }

    def save(self, epoch_file: bool = False) -> None:
        """Rank 0 writes; the others hold the same state (nothing to gather)."""
        self._saved_at = time.monotonic()
        if not self.parallel.main:
            return
        state = self.checkpoint_state()
        save_checkpoint(self.run_dir / "checkpoints" / "last.pt", state)
        if epoch_file:
            save_checkpoint(self.run_dir / "checkpoints" / f"epoch_{self.state.epoch}.pt", state)

    def restore(self, path: Path) -> None:
        self.restore_state(load_checkpoint(path, self.fingerprint))

    def restore_state(self, state: dict) -> None:
        """Continue from a loaded checkpoint (data-parallel ranks get rank 0's copy)."""
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.w_sched.load_state_dict(state["w_sched"])
        if self.a_opt and state["a_opt"]:
            self.a_opt.load_state_dict(state["a_opt"])
        torch.set_rng_state(state["rng"])
        self.state = SearchState(state["epoch"], state["step"], list(state["metrics"]),
                                 list(state["alpha_history"]), dict(state["running"]))

    # ------------------------------------------------------------------ the loop
    def batches(self, epoch: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """Per step: this rank's shard of the weight batch and of the architecture batch, and
        the global batch size (the same global batches as one process, split `[rank::world]`).

        With several ranks both batches of a step are cut to one length, so both halves share
        a rank's weight in the gradient average; that only differs from one process when a
        half of the data holds less than one batch.
        """
        cfg, par = self.config, self.parallel
        w_order = epoch_order(self.w_idx, cfg.seed, epoch, 1)
        a_order = epoch_order(self.a_idx, cfg.seed, epoch, 2)
        steps = min(len(w_order), len(a_order)) // cfg.batch_size
        out = []
        for s in range(max(steps, 1)):
            w = w_order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            a = a_order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if par.world > 1:
                n = min(len(w), len(a))
                if n < par.world:
                    raise UsageError(f"a global batch of {n} cannot feed {par.world} processes",
                                     Span.of_file(str(self.run_dir)),
                                     f"use at most {n} processes or a larger --batch-size")
                w, a = w[:n], a[:n]
            out.append((w[par.rank::par.world], a[par.rank::par.world], len(w)))
        return out

    def tensor_batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(self.data.x_train[idx]).to(self.device)
        y = torch.from_numpy(self.data.y_train[idx]).to(self.device)
        return x, y

    def step(self, w_idx: np.ndarray, a_idx: np.ndarray, total: int | None = None,
             stop: Callable[[], float] = lambda: 0.0) -> dict:
        """One α step and one w step on this rank's shards of a global batch of `total`.

        Returns the step's figures over the global batch; `stop()` (this rank's
        `InterruptFlag.code`), asked after the step's work, comes back as the signal any rank
        saw (or None), so every rank stops after the same step for the same reason.
        """
        cfg = self.config
        self.parts.reduce = self.parallel.reducer(len(w_idx), total or len(w_idx))
        train, valid = self.tensor_batch(w_idx), self.tensor_batch(a_idx)
        self.model.train()
        val_loss = torch.zeros(())
        if self.a_opt is not None:
            self.a_opt.zero_grad(set_to_none=True)
            if cfg.order == 2:
                val_loss = bilevel.second_order_alpha_grad(
                    self.parts, train, valid, self.w_sched.get_last_lr()[0], cfg.w_momentum,
                    cfg.w_weight_decay, self.w_opt)
            else:
                val_loss = bilevel.first_order_alpha_grad(self.parts, valid)
            self._check_finite(val_loss, "validation (architecture) loss")
            self.a_opt.step()
            self._check_alphas()
        loss, logits = bilevel.weight_step(self.parts, train, self.w_opt, cfg.grad_clip)
        self._check_finite(loss, "training (weight) loss")
        correct = int((logits.argmax(1) == train[1]).sum())
        out = {"loss": float(loss), "val_loss": float(val_loss), "correct": correct,
               "seen": len(w_idx), "stop": stop()}
        if self.parallel.world == 1:
            return {**out, "stop": InterruptFlag.decode(out["stop"])}
        sums = self.parallel.sync([out["loss"] * len(w_idx), out["val_loss"] * len(a_idx),
                                   correct, len(w_idx), len(a_idx), float(out["stop"])],
                                  self.bn_buffers)
        seen, val_seen = int(sums[3]), max(int(sums[4]), 1)
        return {"loss": sums[0] / seen, "val_loss": sums[1] / val_seen, "correct": int(sums[2]),
                "seen": seen, "stop": InterruptFlag.decode(sums[5])}

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        if not math.isfinite(float(value)):
            raise NumericalError(
                f"the {what} became {float(value)} at epoch {self.state.epoch + 1}, step "
                f"{self.state.step + 1}; the last good checkpoint is kept in "
                f"{self.run_dir / 'checkpoints' / 'last.pt'}",
                Span.of_file(str(self.run_dir)),
                "lower the learning rates (w_lr, arch_lr) or raise grad_clip's strictness")

    def _check_alphas(self) -> None:
        for a in self.alphas:
            a = a.detach()
            if not torch.isfinite(a).all() or float(a.abs().max()) > 1e4:
                raise NumericalError(
                    f"architecture parameters exploded (|α| > 1e4 or NaN) at epoch "
                    f"{self.state.epoch + 1}; the last good checkpoint is kept",
                    Span.of_file(str(self.run_dir)), "lower arch_lr or the regularizer weights")

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch: int = 512) -> tuple[float, float]:
        """Loss and accuracy in eval mode (BN running statistics, deterministic gates)."""
        self.model.eval()
        loss_sum, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(x), batch):
                xb = torch.from_numpy(x[start:start + batch]).to(self.device)
                yb = torch.from_numpy(y[start:start + batch]).to(self.device)
                logits = self.model(xb)
                loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
                correct += int((logits.argmax(1) == yb).sum())
        return loss_sum / max(len(x), 1), correct / max(len(x), 1)

    def run(self, progress: Callable[[dict], None] | None = None) -> SearchState:
        cfg = self.config
        if self.state.epoch == 0 and self.state.step == 0:
            self.save()  # a run killed during its first epoch can still be resumed
        with InterruptFlag() as flag:
            while self.state.epoch < cfg.epochs:
                epoch = self.state.epoch
                self.model.gate.tau.fill_(self.schedule.at(epoch / max(1, cfg.epochs - 1)))
                batches = self.batches(epoch)
                started = time.perf_counter()
                while self.state.step < len(batches):
                    out = self.step(*batches[self.state.step], stop=lambda: flag.code)
                    for key in ("loss", "val_loss"):
                        self.state.running[key] += out[key]
                    self.state.running["correct"] += out["correct"]
                    self.state.running["seen"] += out["seen"]
                    self.state.running["steps"] += 1
                    self.state.step += 1
                    if self.parallel.main and time.monotonic() - self._saved_at >= self.save_every:
                        self.save()  # mid-epoch: a crash of a long epoch loses minutes, not all
                    if progress:
                        progress({"epoch": epoch + 1, "step": self.state.step,
                                  "steps": len(batches), **self._running_means()})
                    if out["stop"]:  # this rank's signal, or another rank's
                        self.save()
                        if self.parallel.world > 1:
                            # no rank exits before rank 0's checkpoint is written: the
                            # launcher stops the others as soon as one worker ends (the BN
                            # buffers only place the all-reduce on the model's device)
                            self.parallel.sync([0.0], self.bn_buffers)
                            ignore_stop_signals()  # from here on this worker only exits
                        raise Interrupted(self.run_dir, out["stop"])
                self._end_epoch(time.perf_counter() - started)
        return self.state

    def _running_means(self) -> dict:
        r = self.state.running
        n = max(r["steps"], 1)
        return {"loss": r["loss"] / n, "val_loss": r["val_loss"] / n,
                "train_acc": r["correct"] / max(r["seen"], 1), "tau": float(self.model.gate.tau)}

    def _end_epoch(self, seconds: float) -> None:
        cfg = self.config
        means = self._running_means()
        a_x, a_y = self.data.x_train[self.a_idx], self.data.y_train[self.a_idx]
        val_loss, val_acc = self.evaluate(a_x, a_y)
        weights = gate_weights(self.model) if self.alphas else {}
        record = {"epoch": self.state.epoch + 1, "train_loss": means["loss"],
                  "train_acc": means["train_acc"], "arch_loss": means["val_loss"],
                  "val_loss": val_loss, "val_acc": val_acc, "tau": means["tau"],
                  "lr": self.w_sched.get_last_lr()[0],
                  "expected_cost": (self.penalty.current_cost() if self.penalty.tracks_cost
                                    else None),
                  "cost_unit": UNIT[cfg.cost_kind] if self.penalty.tracks_cost else None,
                  "seconds": round(seconds, 3)}
        self.state.metrics.append(record)
        self.state.alpha_history.append({"epoch": self.state.epoch + 1, "weights": weights})
        self.w_sched.step()
        self.state.epoch += 1
        self.state.step = 0
        self.state.running = SearchState().running
        if self.parallel.main:
            append_jsonl(self.run_dir / "metrics.jsonl", self.state.metrics)
            write_json(self.run_dir / "alpha_history.json", self.state.alpha_history)
        self.save(epoch_file=True)


def _running_stats(model: nn.Module) -> list[torch.Tensor]:
    """The BN running means and variances, which data-parallel ranks average every step."""
    out = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            out += [b for b in (m.running_mean, m.running_var) if b is not None]
    return out
