"""Training and evaluation of (backdoored) classifiers for the attack lab.

Everything is seeded (global torch RNG, shuffling and poisoning generators), so on CPU a run with the
same arguments and the same initial model gives the same weights.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import Attack, InputAware

Tensor = torch.Tensor
Progress = Callable[[str], None] | None

__all__ = ["evaluate", "train_backdoored", "train_clean"]


def _check(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    y = torch.as_tensor(y).long()
    if x.dim() != 4 or len(x) != len(y):
        raise ValueError(f"expected x (N, C, H, W) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def _optimizer(params, lr: float, total_steps: int):
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    )
    return opt, sched


def _batches(n: int, batch_size: int, g: torch.Generator):
    perm = torch.randperm(n, generator=g)
    for i in range(0, n, batch_size):
        yield perm[i : i + batch_size]


def _fit(model, x, y, *, epochs, batch_size, lr, seed, device, progress, tag) -> nn.Module:
    model.to(device)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(x) / batch_size)
    opt, sched = _optimizer(model.parameters(), lr, steps)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        tot_loss, correct, seen = 0.0, 0, 0
        for idx in _batches(len(x), batch_size, g):
            xb, yb = x[idx].to(device), y[idx].to(device)
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
            seen += len(idx)
        if progress:
            progress(f"{tag} epoch {epoch + 1}/{epochs}: loss {tot_loss / seen:.4f}, "
                     f"train acc {correct / seen:.4f}, {time.perf_counter() - t0:.1f}s")
    model.eval()
    return model


def train_clean(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Progress = None,
) -> nn.Module:
    """Train ``model`` on clean data with Adam (cosine-decayed ``lr``) and cross-entropy; returns it in eval mode."""
    x, y = _check(x_train, y_train)
    torch.manual_seed(seed)
    return _fit(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                progress=progress, tag="clean")


def train_backdoored(
    model: nn.Module,
    attack: Attack,
    x_train: Tensor,
    y_train: Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 2e-3,
    rate: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Progress = None,
) -> nn.Module:
    """Train ``model`` on a training set poisoned by ``attack`` at ``rate``; returns it in eval mode.

    Static attacks poison the set once with ``attack.poison``.  Trainable attacks
    (:class:`~bdscan.lab.attacks.InputAware`) learn their trigger generator jointly with the model;
    afterwards ``attack.apply`` uses the learnt generator.
    """
    x, y = _check(x_train, y_train)
    torch.manual_seed(seed)
    if isinstance(attack, InputAware):
        return _train_inputaware(model, attack, x, y, epochs=epochs, batch_size=batch_size, lr=lr, rate=rate,
                                 seed=seed, device=device, progress=progress)
    xp, yp, idx = attack.poison(x, y, rate=rate, generator=torch.Generator().manual_seed(seed + 1))
    if progress:
        progress(f"{attack.name}: poisoned {len(idx)} of {len(x)} training samples")
    return _fit(model, xp, yp, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
                progress=progress, tag=attack.name)


def _train_inputaware(model, attack: InputAware, x, y, *, epochs, batch_size, lr, rate, seed, device,
                      progress) -> nn.Module:
    """Input-aware dynamic backdoor training (Nguyen & Tran 2020, Algorithm 1, simplified).

    1. Mask net alone: diversity loss + ``lambda_norm * relu(mean(mask) - mask_density)``.
    2. Mask net frozen; per batch the first ``rate`` share of the samples carry their own trigger and
       the target label, the next ``cross_rate`` share carry the trigger made from *other* images and
       keep their label (cross mode); classifier and pattern net are trained together on
       cross-entropy + ``lambda_div`` * diversity loss.
    """
    gen = attack.generator.to(device)
    model.to(device)
    g = torch.Generator().manual_seed(seed)
    n = len(x)
    t0 = time.perf_counter()

    # -- stage 1: mask generator -------------------------------------------------------------
    steps_per_epoch = math.ceil(n / batch_size)
    mask_steps = attack.mask_steps
    opt_m = torch.optim.Adam(gen.mask_net.parameters(), lr=attack.lr_mask)
    gen.train()
    step = 0
    while step < mask_steps:
        for idx in _batches(n, batch_size, g):
            if step >= mask_steps:
                break
            xb = x[idx].to(device)
            x2 = xb.roll(1, dims=0)
            m1, m2 = gen.mask(xb), gen.mask(x2)
            loss_norm = F.relu(m1.mean() - attack.mask_density)
            loss = attack.lambda_norm * loss_norm + attack.lambda_div * attack.diversity_loss(xb, x2, m1, m2)
            opt_m.zero_grad(set_to_none=True)
            loss.backward()
            opt_m.step()
            step += 1
    for p in gen.mask_net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        dens = gen.mask(x[:512].to(device)).mean().item()
    if dens < attack.mask_density / 4:
        warnings.warn(f"inputaware: the mask generator collapsed (density {dens:.4f}, wanted "
                      f"{attack.mask_density}); try a lower lr_mask or another seed")
    if progress:
        progress(f"inputaware: mask net trained for {mask_steps} steps, mask density {dens:.3f}, "
                 f"{time.perf_counter() - t0:.1f}s")

    # -- stage 2: classifier + pattern generator ---------------------------------------------
    steps = epochs * steps_per_epoch
    opt_c, sched_c = _optimizer(model.parameters(), lr, steps)
    opt_g, sched_g = _optimizer(gen.pattern_net.parameters(), attack.lr_generator, steps)
    for epoch in range(epochs):
        model.train()
        gen.pattern_net.train()
        tot, tot_div, seen = 0.0, 0.0, 0
        for idx in _batches(n, batch_size, g):
            xb, yb = x[idx].to(device), y[idx].to(device)
            b = len(idx)
            nb = int(round(rate * b))
            nc = int(round(attack.cross_rate * b))
            nc = min(nc, b - nb)
            # backdoor: own trigger, target label (all-to-one)
            x_bd_src = xb[:nb]
            p_bd = gen.pattern(x_bd_src)
            with torch.no_grad():
                m_bd = gen.mask(x_bd_src)
            x_bd = attack.blend(x_bd_src, p_bd, m_bd)
            # cross: trigger made from other images of the batch, true label kept
            x_cr_src = xb[nb : nb + nc]
            x_other = xb.roll(1, dims=0)[nb : nb + nc]
            p_cr = gen.pattern(x_other)
            with torch.no_grad():
                m_cr = gen.mask(x_other)
            x_cr = attack.blend(x_cr_src, p_cr, m_cr)
            inputs = torch.cat([x_bd, x_cr, xb[nb + nc :]])
            targets = torch.cat([torch.full_like(yb[:nb], attack.target), yb[nb:]])
            loss_ce = F.cross_entropy(model(inputs), targets)
            k = min(nb, nc)
            if k > 0:
                loss_div = attack.diversity_loss(x_bd_src[:k], x_other[:k], p_bd[:k], p_cr[:k])
            else:
                loss_div = torch.zeros((), device=device)
            loss = loss_ce + attack.lambda_div * loss_div
            opt_c.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_c.step()
            opt_g.step()
            sched_c.step()
            sched_g.step()
            tot += loss_ce.item() * b
            tot_div += loss_div.item() * b
            seen += b
        if progress:
            progress(f"inputaware epoch {epoch + 1}/{epochs}: ce {tot / seen:.4f}, div {tot_div / seen:.4f}, "
                     f"{time.perf_counter() - t0:.1f}s")
    for p in gen.mask_net.parameters():
        p.requires_grad_(True)
    gen.eval()
    model.eval()
    return model


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None = None, batch_size: int = 512) -> dict:
    """Clean accuracy ``ca`` on (x, y) and, given an attack, its success rate ``asr``.

    ASR is the share of the images whose true class is not the attack's target that the model puts in
    the target class once the trigger is applied (``None`` without an attack).
    """
    x, y = _check(x, y)
    model.eval()
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))

    def predict(images: Tensor) -> Tensor:
        preds = [model(images[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)

    ca = (predict(x) == y).float().mean().item() if len(x) else float("nan")
    asr = None
    if attack is not None:
        keep = y != attack.target
        xs = x[keep]
        hits, total = 0, 0
        for i in range(0, len(xs), batch_size):
            xa = attack.apply(xs[i : i + batch_size])
            hits += (predict(xa) == attack.target).sum().item()
            total += len(xa)
        asr = hits / total if total else float("nan")
    return {"ca": ca, "asr": asr}
