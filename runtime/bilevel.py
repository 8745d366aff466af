"""The bilevel step of DARTS: α on validation data, then w on training data.

min_α L_val(w*(α), α)  s.t.  w*(α) = argmin_w L_train(w, α)

First order ignores the dependence of w* on α. Second order approximates w* by one virtual
SGD step w' = w − ξ(m + ∇_w L_train + λw) and differentiates through it:
  ∇_α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) · ∇_{w'} L_val(w', α),
the Hessian-vector product by central finite differences (DARTS). `exact_hypergradient`
differentiates through the virtual step with autograd instead; tests use it as the oracle.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Batch = tuple[torch.Tensor, torch.Tensor]
Reducer = Callable[[list[torch.Tensor]], None]


def _no_reduce(tensors: list[torch.Tensor]) -> None:
    """Single-process default; the distributed runner averages across ranks instead."""


@dataclass
class StepParts:
    """What one step needs: the model, its two parameter groups and the architecture penalty."""

    model: nn.Module
    weights: list[nn.Parameter]
    alphas: list[nn.Parameter]
    penalty: Callable[[], torch.Tensor]
    reduce: Reducer = _no_reduce


def loss_of(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and the logits (kept for accuracy bookkeeping)."""
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits, y), logits


@contextmanager
def frozen(params: list[nn.Parameter]):
    """Parameters that a pass does not differentiate stop requiring grad for its duration.

    Autograd then saves only what the wanted gradient needs: with w frozen, a convolution keeps
    no input for its weight gradient; with α frozen, a mixed op keeps no candidate output for
    α's gradient. Both the α step and the w step store markedly less (and run faster).
    """
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _virtual_weights(parts: StepParts, train: Batch, xi: float, momentum: float,
                     weight_decay: float, w_opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """w' = w − ξ(momentum·buf + ∇_w L_train + λw), detached (DARTS's unrolled model)."""
    with frozen(parts.alphas):
        loss, _ = loss_of(parts.model, train)
        grads = torch.autograd.grad(loss, parts.weights, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(parts.weights, grads)]
    parts.reduce(grads)
    new = []
    for w, g in zip(parts.weights, grads):
        buf = w_opt.state.get(w, {}).get("momentum_buffer")
        step = g + weight_decay * w.detach()
        if buf is not None:
            step = step + momentum * buf
        new.append((w.detach() - xi * step).requires_grad_(True))
    return new


class _Swap:
    """Temporarily put other tensors in the weight parameters' places (for w' and w±)."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.saved = [p.detach().clone() for p in params]

    def load(self, values: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, v in zip(self.params, values):
                p.copy_(v)

    def restore(self) -> None:
        self.load(self.saved)


def objective(parts: StepParts, loss: torch.Tensor) -> torch.Tensor:
    """L_val plus the architecture penalty. A penalty with an `objective` method combines the
    two itself: the multiplicative cost form, L_val · (E[cost]/target)^β, is not a sum."""
    combine = getattr(parts.penalty, "objective", None)
    return combine(loss) if combine is not None else loss + parts.penalty()


def first_order_alpha_grad(parts: StepParts, valid: Batch) -> torch.Tensor:
    """∇_α (L_val + penalty) at the current w; returns the validation loss."""
    with frozen(parts.weights):
        loss, _ = loss_of(parts.model, valid)
        total = objective(parts, loss)
        grads = torch.autograd.grad(total, parts.alphas, allow_unused=True)
    _assign(parts.alphas, grads, parts.reduce)
    return loss.detach()


def second_order_alpha_grad(parts: StepParts, train: Batch, valid: Batch, xi: float,
                            momentum: float, weight_decay: float,
                            w_opt: torch.optim.Optimizer, r: float = 1e-2) -> torch.Tensor:
    """DARTS's unrolled α gradient with the finite-difference Hessian-vector product."""
    swap = _Swap(parts.weights)
    try:
        virtual = _virtual_weights(parts, train, xi, momentum, weight_decay, w_opt)
        swap.load(virtual)
        loss, _ = loss_of(parts.model, valid)
        total = objective(parts, loss)
        grads = torch.autograd.grad(total, parts.alphas + parts.weights, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g
                 for p, g in zip(parts.alphas + parts.weights, grads)]
        parts.reduce(grads)
        d_alpha, vector = grads[: len(parts.alphas)], grads[len(parts.alphas):]
        norm = torch.sqrt(sum((v * v).sum() for v in vector))
        eps = r / max(float(norm), 1e-12)
        plus = [w + eps * v for w, v in zip(swap.saved, vector)]
        minus = [w - eps * v for w, v in zip(swap.saved, vector)]
        swap.load(plus)
        g_plus = _alpha_grads_of_train(parts, train)
        swap.load(minus)
        g_minus = _alpha_grads_of_train(parts, train)
    finally:
        swap.restore()
    hvp = [(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus)]
    _assign(parts.alphas, [da - xi * h for da, h in zip(d_alpha, hvp)], lambda _: None)
    return loss.detach()


def _alpha_grads_of_train(parts: StepParts, train: Batch) -> list[torch.Tensor]:
    with frozen(parts.weights):
        loss, _ = loss_of(parts.model, train)
        grads = torch.autograd.grad(loss, parts.alphas, allow_unused=True)
    grads = [torch.zeros_like(a) if g is None else g for a, g in zip(parts.alphas, grads)]
    parts.reduce(grads)
    return grads


def _assign(params: list[nn.Parameter], grads, reduce: Reducer) -> None:
    grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]
    reduce(grads)
    for p, g in zip(params, grads):
        p.grad = g


def exact_hypergradient(parts: StepParts, train: Batch, valid: Batch, xi: float,
                        weight_decay: float = 0.0) -> list[torch.Tensor]:
    """d/dα L_val(w − ξ(∇_w L_train(w, α) + λw), α) by autograd through the virtual step.

    No momentum term (tests compare against the finite-difference form on a fresh optimizer).
    Costs a second backward pass through the graph, which is why the search does not use it.
    """
    model = parts.model
    names = dict((id(p), n) for n, p in model.named_parameters())
    weight_names = [names[id(w)] for w in parts.weights]
    alpha_names = [names[id(a)] for a in parts.alphas]
    buffers = {n: b for n, b in model.named_buffers()}

    def loss_with(ws, alphas, batch):
        state = dict(zip(weight_names, ws)) | dict(zip(alpha_names, alphas)) | buffers
        x, y = batch
        return F.cross_entropy(functional_call(model, state, (x,)), y)

    ws = [w.detach().requires_grad_(True) for w in parts.weights]
    alphas = [a.detach().requires_grad_(True) for a in parts.alphas]
    train_loss = loss_with(ws, alphas, train)
    g = torch.autograd.grad(train_loss, ws, create_graph=True, allow_unused=True)
    g = [torch.zeros_like(w) if gi is None else gi for w, gi in zip(ws, g)]
    virtual = [w - xi * (gi + weight_decay * w) for w, gi in zip(ws, g)]
    val_loss = loss_with(virtual, alphas, valid)
    grads = torch.autograd.grad(val_loss, alphas, allow_unused=True)
    return [torch.zeros_like(a) if gi is None else gi for a, gi in zip(alphas, grads)]


def weight_step(parts: StepParts, train: Batch, w_opt: torch.optim.Optimizer,
                grad_clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on w (α frozen); returns the training loss and logits."""
    w_opt.zero_grad(set_to_none=True)
    with frozen(parts.alphas):
        loss, logits = loss_of(parts.model, train)
        grads = torch.autograd.grad(loss, parts.weights, allow_unused=True)
    _assign(parts.weights, grads, parts.reduce)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(parts.weights, grad_clip)
    w_opt.step()
    return loss.detach(), logits.detach()
