"""Target-class detection and trigger synthesis from clean samples alone (METHOD.md, detection).

Neural-Cleanse style inversion, batched over all candidate classes at once: for each class k a mask m_k
and a pattern p_k such that (1 - m_k) x + m_k p_k sends images of other classes to k with a small mask.
The target of a backdoor needs an unusually small mask: a MAD anomaly index over the mask sizes finds it.
A second, data-free signal (maximum attainable logit margin per class, MM-BD) is computed and reported as
evidence; it raised false alarms on clean models in our measurements, so the verdict rests on the mask sizes.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bdscan.devices import full_precision
from bdscan.observer import NULL_OBSERVER, Observer


@dataclass(frozen=True)
class Trigger:
    target: int
    mask: torch.Tensor  # 1,H,W in [0,1]
    pattern: torch.Tensor  # C,H,W in [0,1]
    mask_l1: float  # mean of the mask: the share of the image it covers
    success: float  # share of other-class samples sent to the target

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mask.to(x.device)
        return (1 - m) * x + m * self.pattern.to(x.device)


LOG_SPREAD_FLOOR = 0.6


@dataclass(frozen=True)
class InversionSettings:
    steps: int = 200
    batch: int = 16
    lr: float = 0.1
    init_lambda: float = 0.05
    success_bar: float = 0.95
    patience: int = 40
    check_every: int = 10


@contextmanager
def frozen(model: nn.Module):
    """Eval mode and no parameter gradients while inputs are optimised; both restored afterwards."""
    was_training = model.training
    req = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, r in zip(model.parameters(), req):
            p.requires_grad_(r)
        model.train(was_training)


def invert_triggers(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[int], *,
    settings: InversionSettings = InversionSettings(), seed: int = 0, observer: Observer = NULL_OBSERVER,
) -> dict[int, Trigger]:
    """Synthesise a trigger per class in ``classes``; ``model`` takes pixel-space input in [0,1]."""
    with frozen(model), full_precision(next(model.parameters()).device):
        return _invert(model, x, y, classes, settings, seed, observer)


def _invert(model, x, y, classes, settings: InversionSettings, seed: int, observer: Observer) -> dict[int, Trigger]:
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    k_n = len(classes)
    _, c, h, w = x.shape
    target = torch.tensor(classes, device=device)
    mask_p = (torch.randn(k_n, 1, h, w, generator=g) * 0.1 - 2.0).to(device).requires_grad_(True)
    pat_p = (torch.randn(k_n, c, h, w, generator=g) * 0.1).to(device).requires_grad_(True)
    opt = torch.optim.Adam([mask_p, pat_p], lr=settings.lr, betas=(0.5, 0.9))
    lam = torch.full((k_n,), settings.init_lambda, device=device)
    best_l1 = torch.full((k_n,), math.inf)
    best_mask = torch.sigmoid(mask_p.detach()).cpu().clone()
    best_pat = torch.sigmoid(pat_p.detach()).cpu().clone()
    best_succ = torch.zeros(k_n)
    last_improve = 0
    x_dev, y_dev = x.to(device), y.to(device)
    observer.start("invert", f"trigger inversion ({k_n} class{'es' if k_n > 1 else ''})", settings.steps)
    succ_acc = torch.zeros(k_n, device=device)
    n_acc = torch.zeros(k_n, device=device)
    try:
        for step in range(1, settings.steps + 1):
            idx = torch.randint(0, len(x), (settings.batch,), generator=g).to(device)
            xb, yb = x_dev[idx], y_dev[idx]
            m = torch.sigmoid(mask_p)
            p = torch.sigmoid(pat_p)
            xs = (1 - m[:, None]) * xb[None] + m[:, None] * p[:, None]  # K,B,C,H,W
            logits = model(xs.reshape(-1, c, h, w)).float().reshape(k_n, settings.batch, -1)
            weight = (yb[None] != target[:, None]).float()  # images of the class itself do not count
            ce = F.cross_entropy(logits.transpose(1, 2), target[:, None].expand(-1, settings.batch), reduction="none")
            ce = (ce * weight).sum(1) / weight.sum(1).clamp(min=1)
            l1 = m.mean(dim=(1, 2, 3))
            loss = (ce + lam * l1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                hit = ((logits.argmax(-1) == target[:, None]).float() * weight).sum(1)
                succ_acc += hit
                n_acc += weight.sum(1)
                if step % settings.check_every == 0:
                    succ = (succ_acc / n_acc.clamp(min=1)).cpu()
                    l1c = l1.detach().cpu()
                    ok = succ >= settings.success_bar
                    better = ok & (l1c < best_l1 * 0.99)
                    if bool(better.any()):
                        last_improve = step
                        best_l1 = torch.where(better, l1c, best_l1)
                        best_mask[better] = m.detach().cpu()[better]
                        best_pat[better] = p.detach().cpu()[better]
                        best_succ = torch.where(better, succ, best_succ)
                    # NC's adaptive weight: push the mask down while the attack works, relax when it fails
                    lam = torch.where(ok.to(device), lam * 1.5, lam / 1.5).clamp(1e-4, 1e3)
                    succ_acc.zero_()
                    n_acc.zero_()
            observer.advance("invert")
            if step - last_improve > settings.patience and bool(torch.isfinite(best_l1).all()):
                break
    finally:
        observer.finish("invert")
    out = {}
    for i, k in enumerate(classes):
        l1v = float(best_l1[i]) if math.isfinite(float(best_l1[i])) else float(best_mask[i].mean())
        out[k] = Trigger(k, best_mask[i], best_pat[i], l1v, float(best_succ[i]))
    return out


def mad_anomaly(values: torch.Tensor, small_side: bool = True, min_spread: float = 0.0) -> torch.Tensor:
    """Anomaly index per entry: distance from the median in units of 1.4826 * MAD (one-sided).

    ``min_spread`` floors the spread: with ten classes whose masks happen to be alike, a tiny MAD would turn
    an ordinary small class into an outlier.
    """
    med = values.median()
    mad = (values - med).abs().median() * 1.4826
    mad = torch.clamp(mad, min=max(min_spread, 1e-6 + 1e-3 * float(med.abs())))
    dev = (med - values) if small_side else (values - med)
    return dev / mad


def max_margins(
    model: nn.Module, shape: tuple[int, int, int], classes: list[int], *, steps: int = 100, restarts: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    """MM-BD statistic: per class, the largest logit margin reachable over inputs in [0,1] (data-free)."""
    with frozen(model):
        return _max_margins(model, shape, classes, steps, restarts, seed)


def _max_margins(model, shape, classes, steps: int, restarts: int, seed: int) -> torch.Tensor:
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    k_n = len(classes)
    z = torch.randn(restarts, k_n, *shape, generator=g).to(device).requires_grad_(True)
    index = torch.tensor(classes, device=device)[None, :, None].expand(restarts, -1, 1)
    opt = torch.optim.Adam([z], lr=0.1)

    def margins() -> torch.Tensor:
        logits = model(torch.sigmoid(z).reshape(-1, *shape)).float().reshape(restarts, k_n, -1)
        return logits.gather(2, index).squeeze(2) - logits.scatter(2, index, -1e9).amax(2)

    for _ in range(steps):
        loss = -margins().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return margins().amax(0).cpu()


@dataclass(frozen=True)
class Detection:
    suspected: bool
    target: int | None
    score: float  # combined anomaly of the most anomalous class
    anomaly: dict[int, float]  # NC anomaly index per class (small-mask side)
    margin_anomaly: dict[int, float]
    mask_l1: dict[int, float]
    triggers: dict[int, Trigger]
    seconds: float
    threshold: float


def detect(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, *, threshold: float = 2.0,
    settings: InversionSettings = InversionSettings(), seed: int = 0, observer: Observer = NULL_OBSERVER,
) -> Detection:
    t0 = time.perf_counter()
    classes = list(range(num_classes))
    triggers = invert_triggers(model, x, y, classes, settings=settings, seed=seed, observer=observer)
    l1 = torch.tensor([triggers[k].mask_l1 for k in classes])
    # mask sizes spread multiplicatively: compare them in log space, spread floored at a factor of e^0.6
    nc = mad_anomaly(torch.log(l1.clamp(min=1e-6)), min_spread=LOG_SPREAD_FLOOR)
    margins = max_margins(model, tuple(x.shape[1:]), classes, seed=seed)
    mm = mad_anomaly(margins, small_side=False)
    # the margin statistic flagged clean models in our measurements: it is reported as evidence, not scored
    combined = nc
    k = int(torch.argmax(combined))
    score = float(combined[k])
    suspected = score > threshold
    return Detection(
        suspected, k if suspected else None, score,
        {c: float(nc[i]) for i, c in enumerate(classes)}, {c: float(mm[i]) for i, c in enumerate(classes)},
        {c: float(l1[i]) for i, c in enumerate(classes)}, triggers, time.perf_counter() - t0, threshold,
    )
