"""Peer defences for comparison, each from its paper's rule, on the same budget as bdscan (a few clean
images, here 10 per class). They act on a torch module whose input is already normalised (wrap with
bdscan.model.Normalized first) and return a new module; the input module is never changed.

- finetune: plain fine-tuning on the clean images (SGD, lr 0.01, momentum 0.9, 20 epochs, batch 32); BatchNorm
  statistics stay frozen (re-estimating them from 100 images costs tens of accuracy points).
- fine_pruning: Liu et al. 2018, "Fine-Pruning": prune the last conv layer's channels in increasing order of
  their mean activation on clean data, as long as accuracy on the clean images stays within 5 points of the
  original (the paper stops at a 4% validation drop; 100 images count in 1% steps), then fine-tune.
- clp: Zheng et al. 2022, "Data-free Backdoor Removal based on Channel Lipschitzness": per conv+BN channel,
  UCLC = largest singular value of the BN-scaled kernel; channels with UCLC > mean + u*std (u = 3) of their
  layer are zeroed. No data.
- anp: Wu & Wang 2021, "Adversarial Neuron Pruning": a mask m in [0,1] on every BN neuron and multiplicative
  perturbations (eps 0.4, random start, one signed step of eps, as in the paper's code) on its weight and
  bias; m minimises alpha * L(m) + (1 - alpha) * L(m + perturbation) (alpha 0.2, SGD lr 0.2, momentum 0.9);
  the BN weight of neurons with m < 0.2 is zeroed. The paper runs 2,000 iterations of batch 128 on 1% of the
  training set with BN in train mode; here 2,000 iterations of batch 128 (the 100 clean images are one batch)
  with BN statistics frozen.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


def _acc(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def finetune(model: nn.Module, x: Tensor, y: Tensor, epochs: int = 20, lr: float = 0.01, batch: int = 32,
             seed: int = 0) -> nn.Module:
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        for m in model.modules():  # BN statistics from 100 images would wreck clean accuracy: keep them frozen
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    return model


def _convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def fine_pruning(model: nn.Module, x: Tensor, y: Tensor, max_drop: float = 0.05, **ft) -> nn.Module:
    model = copy.deepcopy(model).eval()
    _, conv = _convs(model)[-1]
    acts = []
    h = conv.register_forward_hook(lambda m, i, o: acts.append(F.relu(o).mean(dim=(0, 2, 3))))
    base = _acc(model, x, y)
    h.remove()
    order = torch.argsort(acts[0])  # most dormant first
    mask = torch.ones(conv.out_channels, device=conv.weight.device)
    hook = conv.register_forward_hook(lambda m, i, o: o * mask.view(1, -1, 1, 1))
    pruned = 0
    for k in order.tolist():
        mask[k] = 0.0
        if _acc(model, x, y) < base - max_drop:
            mask[k] = 1.0
            break
        pruned += 1
    hook.remove()
    with torch.no_grad():  # make the pruning part of the weights, so fine-tuning keeps it
        conv.weight[mask == 0] = 0.0
        if conv.bias is not None:
            conv.bias[mask == 0] = 0.0
    keep = mask.clone()
    conv.weight.register_hook(lambda g: g * keep.view(-1, 1, 1, 1))
    if conv.bias is not None:
        conv.bias.register_hook(lambda g: g * keep)
    model.fp_pruned = pruned  # type: ignore[attr-defined]
    return finetune(model, x, y, **ft)


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Each BatchNorm2d with the conv that feeds it (the conv registered just before it)."""
    pairs, last = [], None
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            last = m
        elif isinstance(m, nn.BatchNorm2d) and last is not None and last.out_channels == m.num_features:
            pairs.append((last, m))
            last = None
    return pairs


def clp(model: nn.Module, u: float = 3.0) -> nn.Module:
    model = copy.deepcopy(model).eval()
    total = 0
    with torch.no_grad():
        for conv, bn in _conv_bn_pairs(model):
            std = (bn.running_var + bn.eps).sqrt()
            w = conv.weight * (bn.weight / std).view(-1, 1, 1, 1)
            lips = torch.stack([torch.linalg.svdvals(w[k].reshape(w.shape[1], -1)).max() for k in range(len(w))])
            bad = lips > lips.mean() + u * lips.std()
            bn.weight[bad] = 0.0
            bn.bias[bad] = 0.0
            total += int(bad.sum())
    model.clp_pruned = total  # type: ignore[attr-defined]
    return model


class _ANPHooks:
    """Mask and perturbation on every BN neuron: out = (m + d_w) * (bn(x) - beta) + (1 + d_b) * beta."""

    def __init__(self, model: nn.Module, eps: float):
        self.bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.masks = [torch.ones(b.num_features, device=b.weight.device, requires_grad=True) for b in self.bns]
        self.dw = [torch.zeros(b.num_features, device=b.weight.device, requires_grad=True) for b in self.bns]
        self.db = [torch.zeros(b.num_features, device=b.weight.device, requires_grad=True) for b in self.bns]
        self.eps = eps
        self.perturb = False
        self.handles = [b.register_forward_hook(self._hook(i)) for i, b in enumerate(self.bns)]

    def _hook(self, i):
        def fn(mod, inp, out):
            beta = mod.bias.view(1, -1, 1, 1)
            m = self.masks[i]
            dw = self.dw[i] if self.perturb else torch.zeros_like(m)
            db = self.db[i] if self.perturb else torch.zeros_like(m)
            return (m + dw).view(1, -1, 1, 1) * (out - beta) + (1 + db).view(1, -1, 1, 1) * beta
        return fn

    def reset_noise(self, g: torch.Generator):
        with torch.no_grad():
            for t in self.dw + self.db:
                t.copy_((torch.rand(t.shape, generator=g) * 2 - 1) * self.eps)  # drawn on the CPU: same noise anywhere

    def remove(self):
        for h in self.handles:
            h.remove()


def anp(model: nn.Module, x: Tensor, y: Tensor, iters: int = 2000, eps: float = 0.4, step: float = 0.4,
        alpha: float = 0.2, lr: float = 0.2, threshold: float = 0.2, seed: int = 0, batch: int = 128) -> nn.Module:
    model = copy.deepcopy(model).eval()  # BN statistics stay frozen, as in the paper's code
    for p in model.parameters():
        p.requires_grad_(False)
    hooks = _ANPHooks(model, eps)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(hooks.masks, lr=lr, momentum=0.9)
    x_all, y_all = x, y
    for _ in range(iters):
        if len(x_all) > batch:
            idx = torch.randint(0, len(x_all), (batch,), generator=g)
            x, y = x_all[idx], y_all[idx]
        # 1) perturbation: one signed ascent step from a random start, kept within eps
        hooks.reset_noise(g)
        hooks.perturb = True
        loss = -F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, hooks.dw + hooks.db)
        with torch.no_grad():
            for t, gr in zip(hooks.dw + hooks.db, grads):
                t.sub_(step * gr.sign()).clamp_(-eps, eps)
        # 2) mask: natural and perturbed loss
        hooks.perturb = True
        loss_rob = F.cross_entropy(model(x), y)
        hooks.perturb = False
        loss_nat = F.cross_entropy(model(x), y)
        loss = alpha * loss_nat + (1 - alpha) * loss_rob
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for m in hooks.masks:
                m.clamp_(0, 1)
    hooks.remove()
    total = 0
    with torch.no_grad():
        for bn, m in zip(hooks.bns, hooks.masks):
            bad = m < threshold
            bn.weight[bad] = 0.0  # the paper's code zeroes the neuron's weight only
            total += int(bad.sum())
    for p in model.parameters():
        p.requires_grad_(True)
    model.anp_pruned = total  # type: ignore[attr-defined]
    return model


DEFENCES = {
    "finetune": lambda m, x, y: finetune(m, x, y),
    "fine-pruning": lambda m, x, y: fine_pruning(m, x, y),
    "clp": lambda m, x, y: clp(m),
    "anp": lambda m, x, y: anp(m, x, y),
}
