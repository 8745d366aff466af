"""`dasc train`: train a derived network (a pruned IR, no choices left) from scratch.

The recipe is the DARTS evaluation one (SGD with momentum 0.9, cosine learning rate, weight
decay 3e-4, gradient-norm clipping at 5) without its CIFAR extras (cutout, drop-path,
auxiliary head), which mean nothing on 8×8 digits. The model is chosen on a seeded 10% hold-out
of the training split, never on the test split, and both the best and the last model's test
accuracy are reported, so a reader can see how much picking on validation mattered.

Everything the run leaves is written atomically: `metrics.jsonl` (rewritten whole after each
epoch), `best.pt` / `last.pt` (checkpoints carrying the fingerprint of the derived IR, loadable
with `weights_only=True`), `config.json` and `summary.json`. A crash, Ctrl-C or SIGTERM leaves
the files of the last finished epoch, never a torn one, and last.pt carries what
`dasc train --resume` needs to continue from there exactly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dasc.compiler.ir import IR, ChoiceNode
from dasc.errors import NumericalError, Span, UsageError
from dasc.runtime.checkpoint import fingerprint, save_checkpoint
from dasc.runtime.config import MAX_SEED
from dasc.runtime.data import Dataset
from dasc.runtime.lower import lower
from dasc.runtime.rundir import append_jsonl, write_json
from dasc.runtime.search import Parallel, epoch_order, split_indices
from dasc.runtime.stopping import InterruptFlag, Interrupted, ignore_stop_signals
from dasc.runtime.train_state import restore, resume_state

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class TrainConfig:
    """DARTS evaluation defaults, scaled to what the digits task needs (epochs, batch)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        """Reject impossible settings here, so a bad flag fails before any work is done."""
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got "
                                 f"{getattr(self, name)}", hint=f"e.g. --{name.replace('_', '-')} 30")
        for name in ("lr", "lr_min", "momentum", "weight_decay", "grad_clip"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"training setting `{name}` must be a non-negative number, "
                                 f"got {value}", hint="use the DARTS defaults unless you know better")
        if not 0 <= int(self.seed) <= MAX_SEED:  # numpy refuses < 0, torch > 64 bits
            raise UsageError(f"--seed must lie between 0 and 2**64 - 1, got {self.seed}",
                             hint="e.g. --seed 0")
        if not 0 < self.val_fraction < 1:
            raise UsageError(f"val_fraction must lie strictly between 0 and 1, got "
                             f"{self.val_fraction}", hint="the default holds out 10%")
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"unknown device {self.device!r}", hint="choose cpu or cuda")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainResult:
    """What `dasc train` reports; `to_json` is what summary.json holds."""

    test_acc: float          # the model picked on validation (best.pt)
    test_acc_last: float     # the model after the last epoch (last.pt)
    val_acc: float
    best_epoch: int
    epochs: int
    params: int
    macs: int
    macs_method: str         # "cost-model" (compiler.cost on the IR) or "hooks" (measured)
    seconds: float
    out_dir: str
    fingerprint: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- pieces


def check_derived(ir: IR) -> None:
    """Training a super-network by mistake would silently mix ops; refuse it loudly."""
    left = [n for n, p in ir.nodes() if isinstance(p, ChoiceNode)]
    if left:
        raise UsageError(f"the network {ir.name!r} still has {len(left)} choice point(s) "
                         f"(first: {left[0]})", ir.span,
                         "derive an architecture first (pass --arch) so that no choice is left")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available",
                         hint="use --device cpu, or check the driver with nvidia-smi")
    return torch.device(name)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, the figure papers report (no BN running statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def hook_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of convolutions and linear layers for one input, measured.

    The DARTS / NAS-Bench-201 convention: BN, pooling, activations and additions are free.
    Measured with forward hooks on a dummy input, so it holds for any module the lowering
    builds; the compiler's cost model computes the same figure from the IR alone.
    """
    total = 0

    def on_conv(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def on_linear(module: nn.Linear, inputs, output) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(on_linear))
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total)


def network_macs(ir: IR, model: nn.Module) -> tuple[int, str]:
    """MACs from the compiler's cost model when it covers the IR, else measured with hooks."""
    try:
        from dasc.compiler.cost import total_cost
        return int(total_cost(ir).macs), "cost-model"
    except (ImportError, ValueError, KeyError):  # an op the cost model does not know: measure
        shape = ir.node(ir.input).shape
        return hook_macs(model, (shape.c, shape.h, shape.w)), "hooks"


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device,
             batch: int = 512) -> tuple[float, float]:
    """Mean cross-entropy and accuracy in eval mode (BN running statistics)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = torch.from_numpy(x[start:start + batch]).to(device)
            yb = torch.from_numpy(y[start:start + batch]).to(device)
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    n = max(len(x), 1)
    return loss_sum / n, correct / n


def epoch_batches(indices: np.ndarray, seed: int, epoch: int, batch: int) -> list[np.ndarray]:
    """The epoch's mini-batches, a pure function of (seed, epoch); a lone last example is
    dropped because batch norm cannot normalize a batch of one."""
    order = epoch_order(indices, seed, epoch, 3)
    out = [order[s:s + batch] for s in range(0, len(order), batch)]
    return [b for b in out if len(b) > 1] or out


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- the loop


def _shard_step(model: nn.Module, loss: torch.Tensor, parallel: Parallel, local: int,
                total: int) -> None:
    """Backward on this rank's shard, then every gradient combined over ranks (one all-reduce),
    each rank weighted by its share of the global batch: the gradient of the global mean."""
    loss.backward()
    if parallel.world == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    parallel.reducer(local, total)([p.grad for p in params])


def train(ir_derived: IR, data: Dataset, config: TrainConfig, out_dir: str | Path,
          progress: Progress | None = None, *, init: Mapping[str, torch.Tensor] | None = None,
          meta: Mapping[str, object] | None = None, parallel: Parallel = Parallel(),
          resume: Mapping[str, object] | None = None) -> TrainResult:
    """Train `lower(ir_derived)` from scratch (or from `init`, inherited weights) on `data`.

    `out_dir` must exist (the CLI creates and guards it). `progress` gets one dict per step
    (epoch, step, steps, loss, train_acc) and one per epoch (the metrics record, `done=True`).
    `meta` (space, arch, dasc version, ...) is copied into config.json and summary.json.
    With `parallel` of several ranks each rank trains on `batch[rank::world]` of every global
    batch, gradients and BN running statistics are combined every step, all ranks hold the same
    model, and only rank 0 writes. `resume` is a last.pt: training continues after its epoch
    exactly as if it had never stopped (the data order is a pure function of seed and epoch).
    Ctrl-C or SIGTERM stops between steps (every rank after the same one) with `Interrupted`.
    """
    check_derived(ir_derived)
    out = Path(out_dir)
    writes = parallel.main
    device = resolve_device(config.device)
    fp = fingerprint(ir_derived)
    torch.manual_seed(config.seed)
    model = lower(ir_derived).to(device)
    if init is not None:
        model.load_state_dict(dict(init))
    if parallel.sync_bn and parallel.world > 1:
        from dasc.runtime import sync_bn

        sync_bn.convert(model)
    buffers = _running_stats(model)
    params = count_params(model)
    macs, macs_method = network_macs(ir_derived, model)
    if writes and resume is None:
        write_json(out / "config.json", {"config": config.to_json(), "fingerprint": fp,
                                         **dict(meta or {})})

    train_idx, val_idx = split_indices(len(data.x_train), 1 - config.val_fraction, config.seed)
    x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]
    opt = torch.optim.SGD(model.parameters(), config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, float(config.epochs),
                                                       eta_min=config.lr_min)
    metrics: list[dict] = []
    best: tuple[float, float] | None = None  # (val_acc, -val_loss): higher is better
    best_epoch, best_model = 0, cpu_state(model)
    start = 0
    if resume is not None:
        start, metrics, best, best_epoch, best_model = restore(resume, model, opt, sched,
                                                                config, out / "last.pt")
    started = time.perf_counter()
    with InterruptFlag() as flag:
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            batches = epoch_batches(train_idx, config.seed, epoch, config.batch_size)
            if parallel.world > 1:  # every rank needs at least one example of each batch
                batches = [b for b in batches if len(b) >= parallel.world]
            loss_sum, correct, seen = 0.0, 0, 0
            model.train()
            for step, idx in enumerate(batches):
                shard = idx[parallel.rank::parallel.world]
                xb = torch.from_numpy(data.x_train[shard]).to(device)
                yb = torch.from_numpy(data.y_train[shard]).to(device)
                opt.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise NumericalError(
                        f"the training loss became {loss_value} at epoch {epoch + 1}, step "
                        f"{step + 1}; the checkpoints of the last finished epoch are kept in {out}",
                        Span.of_file(str(out)), "lower the learning rate (--lr)")
                _shard_step(model, loss, parallel, len(shard), len(idx))
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                hits = int((logits.detach().argmax(1) == yb).sum())
                stop = flag.code
                if parallel.world > 1:  # the global batch's figures; BN statistics averaged
                    loss_value, hits, stop = parallel.sync(
                        [loss_value * len(shard), hits, stop], buffers)
                    loss_value /= len(idx)
                loss_sum += loss_value * len(idx)
                correct += int(hits)
                seen += len(idx)
                if progress:
                    progress({"epoch": epoch + 1, "epochs": config.epochs, "step": step + 1,
                              "steps": len(batches), "loss": loss_sum / seen,
                              "train_acc": correct / seen})
                if stop:  # any rank's signal stops every rank after this step; the epoch's
                    # steps so far are lost: checkpoints are per epoch
                    if parallel.world > 1:
                        ignore_stop_signals()  # the launcher SIGTERMs the rest as one ends
                    raise Interrupted(out, InterruptFlag.decode(stop), "train",
                                      f" (from the end of epoch {epoch})" if epoch else
                                      " (from the start)")
            lr = sched.get_last_lr()[0]
            sched.step()
            val_loss, val_acc = evaluate(model, x_val, y_val, device)
            record = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                      "train_acc": correct / max(seen, 1), "val_loss": val_loss, "val_acc": val_acc,
                      "lr": lr, "seconds": round(time.perf_counter() - t0, 3)}
            metrics.append(record)
            state = {"fingerprint": fp, "kind": "train", "model": cpu_state(model),
                     "epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss,
                     "config": config.to_json()}
            score = (val_acc, -val_loss)
            if best is None or score > best:
                best, best_epoch, best_model = score, epoch + 1, state["model"]
                if writes:
                    save_checkpoint(out / "best.pt", state)
            if writes:
                save_checkpoint(out / "last.pt", {**state, "resume": resume_state(
                    opt, sched, metrics, best, best_epoch, best_model)})
                append_jsonl(out / "metrics.jsonl", metrics)
            if progress:
                progress({**record, "epochs": config.epochs, "done": True})

    _, test_last = evaluate(model, data.x_test, data.y_test, device)
    model.load_state_dict(best_model)  # what best.pt holds, kept in memory by every rank
    _, test_best = evaluate(model, data.x_test, data.y_test, device)
    result = TrainResult(test_acc=test_best, test_acc_last=test_last, val_acc=best[0],
                         best_epoch=best_epoch, epochs=config.epochs, params=params, macs=macs,
                         macs_method=macs_method,
                         seconds=round(time.perf_counter() - started, 3), out_dir=str(out),
                         fingerprint=fp)
    if writes:
        write_json(out / "summary.json", {**result.to_json(), **dict(meta or {}),
                                          "processes": parallel.world})
    return result


def _running_stats(model: nn.Module) -> list[torch.Tensor]:
    """BN running means and variances: data-parallel ranks average them every step."""
    return [b for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            for b in (m.running_mean, m.running_var) if b is not None]
