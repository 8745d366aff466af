"""A straightforward hand-written DARTS search super-network: the baseline dasc is measured against.

Why it exists: DESIGN.md ("How we measure ourselves") compares dasc's generated supernet with
the way practitioners write DARTS today — the paper's own code style. So this file deliberately
does it the plain way: a `MixedOp` is a ModuleList of all eight candidates evaluated eagerly and
summed in Python (`sum(w * op(x) ...)`), search-time BatchNorms are `affine=False`, pooling
candidates get a trailing non-affine BN, α is a (14 × 8) tensor per cell kind shared by all cells
of that kind and softmaxed on every forward, and the second-order architecture gradient uses the
finite-difference Hessian-vector product of DARTS Eq. 7-8 on an unrolled copy of the network.
No fusion, no tricks: its speed and memory are the reference point, not a target.

API: `Network(C, num_classes, layers)`, `Architect(model, ...)`, `weight_step(...)`,
`make_baseline_step(C, layers, batch, order, ...) -> callable` (one architecture step followed by
one weight step on fixed random 32×32 batches, exactly the body of DARTS's search loop).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
              "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def _relu_conv_bn(c_in, c_out, k, stride, pad, affine, dilation=1, groups=1, extra=()):
    return [nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in if extra else c_out, k, stride, pad, dilation, groups, bias=False),
            *extra, nn.BatchNorm2d(c_out, affine=affine)]


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out, affine):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Zero(nn.Module):
    def __init__(self, stride):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return x.mul(0.0) if self.stride == 1 else x[:, :, ::self.stride, ::self.stride].mul(0.0)


class Identity(nn.Module):
    def forward(self, x):
        return x


def sep_conv(C, k, stride, affine):
    """Separable conv applied twice, as in the paper's candidate set."""
    pad = k // 2
    return nn.Sequential(
        *_relu_conv_bn(C, C, k, stride, pad, affine, groups=C, extra=(nn.Conv2d(C, C, 1, bias=False),)),
        *_relu_conv_bn(C, C, k, 1, pad, affine, groups=C, extra=(nn.Conv2d(C, C, 1, bias=False),)))


def dil_conv(C, k, stride, affine):
    return nn.Sequential(*_relu_conv_bn(C, C, k, stride, k - 1, affine, dilation=2, groups=C,
                                        extra=(nn.Conv2d(C, C, 1, bias=False),)))


def make_op(name, C, stride, affine=False):
    if name == "none":
        return Zero(stride)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(C, C, affine)
    k = int(name[-1])
    return sep_conv(C, k, stride, affine) if name.startswith("sep") else dil_conv(C, k, stride, affine)


class MixedOp(nn.Module):
    def __init__(self, C, stride):
        super().__init__()
        self._ops = nn.ModuleList()
        for name in PRIMITIVES:
            op = make_op(name, C, stride)
            if "pool" in name:  # pools have no BN of their own; DARTS adds a non-affine one
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            self._ops.append(op)

    def forward(self, x, weights):
        return sum(w * op(x) for w, op in zip(weights, self._ops))


class SearchCell(nn.Module):
    """4 intermediate nodes; node j sums a MixedOp on every earlier state (2+3+4+5 = 14 edges)."""

    def __init__(self, steps, multiplier, c_pp, c_p, C, reduction, reduction_prev):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_pp, C, False) if reduction_prev else
                            nn.Sequential(*_relu_conv_bn(c_pp, C, 1, 1, 0, False)))
        self.preprocess1 = nn.Sequential(*_relu_conv_bn(c_p, C, 1, 1, 0, False))
        self._steps, self._multiplier = steps, multiplier
        self._ops = nn.ModuleList(MixedOp(C, 2 if reduction and j < 2 else 1)
                                  for i in range(steps) for j in range(2 + i))

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self._steps):
            s = sum(self._ops[offset + j](h, weights[offset + j]) for j, h in enumerate(states))
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self._multiplier:], dim=1)


class Network(nn.Module):
    def __init__(self, C, num_classes, layers, steps=4, multiplier=4, stem_multiplier=3):
        super().__init__()
        self._C, self._num_classes, self._layers = C, num_classes, layers
        self._steps, self._multiplier, self._stem_multiplier = steps, multiplier, stem_multiplier
        c = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        c_pp, c_p, c = c, c, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c *= 2
            self.cells.append(SearchCell(steps, multiplier, c_pp, c_p, c, reduction, reduction_prev))
            reduction_prev = reduction
            c_pp, c_p = c_p, multiplier * c
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        k = sum(2 + i for i in range(steps))
        # α are plain leaf tensors, not Parameters: `parameters()` must yield the weights only
        self.alphas_normal = (1e-3 * torch.randn(k, len(PRIMITIVES))).requires_grad_()
        self.alphas_reduce = (1e-3 * torch.randn(k, len(PRIMITIVES))).requires_grad_()

    def arch_parameters(self):
        return [self.alphas_normal, self.alphas_reduce]

    def to(self, *args, **kwargs):
        super().to(*args, **kwargs)
        self.alphas_normal = self.alphas_normal.detach().to(*args, **kwargs).requires_grad_()
        self.alphas_reduce = self.alphas_reduce.detach().to(*args, **kwargs).requires_grad_()
        return self

    def new(self):
        """A fresh network with the same α values (the unrolled model of the 2nd-order step)."""
        a = self.alphas_normal
        clone = Network(self._C, self._num_classes, self._layers, self._steps,
                        self._multiplier, self._stem_multiplier).to(device=a.device, dtype=a.dtype)
        for x, y in zip(clone.arch_parameters(), self.arch_parameters()):
            x.data.copy_(y.data)
        return clone

    def forward(self, x):
        w_normal = F.softmax(self.alphas_normal, dim=-1)
        w_reduce = F.softmax(self.alphas_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def loss(self, x, y):
        return F.cross_entropy(self(x), y)

    def genotype(self):
        """The paper's derivation: per node keep the 2 strongest edges by their best non-none op."""
        def parse(weights):
            gene, start = [], 0
            none = PRIMITIVES.index("none")
            for i in range(self._steps):
                w = weights[start:start + 2 + i]
                best = [max((v, k) for k, v in enumerate(row) if k != none) for row in w]
                for j in sorted(range(2 + i), key=lambda j: -best[j][0])[:2]:
                    gene.append((PRIMITIVES[best[j][1]], j))
                start += 2 + i
            return gene
        concat = list(range(2 + self._steps - self._multiplier, self._steps + 2))
        return (parse(F.softmax(self.alphas_normal, -1).tolist()), concat,
                parse(F.softmax(self.alphas_reduce, -1).tolist()), concat)


def _flat(xs):
    return torch.cat([x.reshape(-1) for x in xs])


class Architect:
    """Updates α with Adam on the validation loss, first order or unrolled second order."""

    def __init__(self, model, momentum=0.9, weight_decay=3e-4, arch_lr=3e-4, arch_weight_decay=1e-3,
                 hvp_r=1e-2):
        self.model, self.momentum, self.weight_decay = model, momentum, weight_decay
        self.hvp_r = hvp_r  # finite-difference radius: ε = r / |v| (the paper uses r = 0.01)
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=arch_lr, betas=(0.5, 0.999),
                                          weight_decay=arch_weight_decay)

    def step(self, x_train, y_train, x_val, y_val, eta, w_optimizer, order=1):
        self.optimizer.zero_grad()
        if order == 2:
            self._unrolled_backward(x_train, y_train, x_val, y_val, eta, w_optimizer)
        else:
            self.model.loss(x_val, y_val).backward()
        self.optimizer.step()

    def _unrolled_model(self, x, y, eta, w_optimizer):
        """w' = w - η (momentum + ∇w L_train + λ w): one virtual SGD step."""
        params = list(self.model.parameters())
        theta = _flat(params).detach()
        try:
            moment = _flat(w_optimizer.state[p]["momentum_buffer"] for p in params) * self.momentum
        except (KeyError, TypeError, AttributeError):
            moment = torch.zeros_like(theta)
        grads = torch.autograd.grad(self.model.loss(x, y), params)
        dtheta = _flat(grads).detach() + self.weight_decay * theta
        unrolled = self.model.new()
        state = self.model.state_dict()
        new_theta, offset = theta - eta * (moment + dtheta), 0
        for name, p in self.model.named_parameters():
            state[name] = new_theta[offset:offset + p.numel()].view_as(p)
            offset += p.numel()
        unrolled.load_state_dict(state)
        return unrolled

    def _unrolled_backward(self, x_train, y_train, x_val, y_val, eta, w_optimizer):
        unrolled = self._unrolled_model(x_train, y_train, eta, w_optimizer)
        loss = unrolled.loss(x_val, y_val)
        n_alpha = len(unrolled.arch_parameters())
        grads = torch.autograd.grad(loss, unrolled.arch_parameters() + list(unrolled.parameters()))
        d_alpha = [g.detach() for g in grads[:n_alpha]]
        vector = [g.detach() + self.weight_decay * p.detach()
                  for g, p in zip(grads[n_alpha:], unrolled.parameters())]
        implicit = self._hessian_vector_product(vector, x_train, y_train, self.hvp_r)
        for a, g, ig in zip(self.model.arch_parameters(), d_alpha, implicit):
            a.grad = g - eta * ig

    def _hessian_vector_product(self, vector, x, y, r):
        """(∇α L(w+) - ∇α L(w-)) / 2ε with w± = w ± ε v, ε = r / |v| (DARTS Eq. 8)."""
        eps = r / _flat(vector).norm()
        params = list(self.model.parameters())
        with torch.no_grad():
            for p, v in zip(params, vector):
                p.add_(v, alpha=eps)
        g_pos = torch.autograd.grad(self.model.loss(x, y), self.model.arch_parameters())
        with torch.no_grad():
            for p, v in zip(params, vector):
                p.sub_(v, alpha=2 * eps)
        g_neg = torch.autograd.grad(self.model.loss(x, y), self.model.arch_parameters())
        with torch.no_grad():
            for p, v in zip(params, vector):
                p.add_(v, alpha=eps)
        return [(a - b) / (2 * eps) for a, b in zip(g_pos, g_neg)]


def weight_step(model, w_optimizer, x, y, grad_clip=5.0):
    w_optimizer.zero_grad()
    model.loss(x, y).backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    w_optimizer.step()


def make_baseline_step(C=8, layers=5, batch=32, order=1, classes=10, device="cpu", seed=0, lr=0.025,
                       hw=32):
    """A zero-argument callable doing one DARTS search iteration (α step, then w step) on fixed
    random hw×hw batches; `.model` and `.architect` are attached for inspection."""
    torch.manual_seed(seed)
    model = Network(C, classes, layers).to(device)
    w_opt = torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=3e-4)
    architect = Architect(model)
    g = torch.Generator().manual_seed(seed + 1)
    xt, xv = (torch.randn(batch, 3, hw, hw, generator=g).to(device) for _ in range(2))
    yt, yv = (torch.randint(0, classes, (batch,), generator=g).to(device) for _ in range(2))
    model.train()

    def step():
        architect.step(xt, yt, xv, yv, lr, w_opt, order=order)
        weight_step(model, w_opt, xt, yt)

    step.model, step.architect = model, architect
    return step
