"""Parameter and multiply-accumulate counting for the reference networks.

Why a separate counter: `DESIGN.md` defines `derive --json`'s `"macs"` as the multiply-accumulates
of convolutions and linear layers for one input at the space's input shape, "as the DARTS and
NAS-Bench-201 tools do". We measure that on the actual torch modules with forward hooks, so the
figure depends only on what the network really computes (resolution after strides, groups,
dilation), not on anyone's formula:

* Conv2d: C_out · (C_in / groups) · k_h · k_w · H_out · W_out   (dilation adds no MACs)
* Linear: in_features · out_features (per input row)

Biases, BatchNorm, pooling, ReLU and additions are not counted. Parameters are the trainable
parameters, excluding any whose name contains `auxiliary` (the DARTS auxiliary head).
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["count_params", "count_macs", "macs_by_module"]


def count_params(model: nn.Module, exclude: tuple[str, ...] = ("auxiliary",)) -> int:
    return sum(p.numel() for name, p in model.named_parameters()
               if p.requires_grad and not any(e in name for e in exclude))


def macs_by_module(model: nn.Module, input_shape=(3, 32, 32)) -> dict[str, int]:
    """MACs per Conv2d/Linear module name for one input (batch 1, eval mode, no grad).

    A module called several times accumulates. The model's training flag is restored.
    """
    counts: dict[str, int] = {}
    hooks = []

    def hook_for(name):
        def hook(mod, inputs, output):
            if isinstance(mod, nn.Conv2d):
                kh, kw = mod.kernel_size
                per_pos = mod.out_channels * (mod.in_channels // mod.groups) * kh * kw
                n = per_pos * output.shape[-1] * output.shape[-2]
            else:
                rows = output.numel() // output.shape[-1]
                n = rows * mod.in_features * mod.out_features
            counts[name] = counts.get(name, 0) + int(n)
        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(hook_for(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return counts


def count_macs(model: nn.Module, input_shape=(3, 32, 32)) -> int:
    return sum(macs_by_module(model, input_shape).values())
