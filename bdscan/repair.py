"""Short repair fine-tune (METHOD.md step 5): edited units held, BatchNorm statistics frozen.

The model trains in eval mode, so BatchNorm keeps its running statistics (a few dozen images must not
overwrite them). Gradients of edited units are zeroed, so they stay at their dampened values. The loss is
cross-entropy on the clean samples, cross-entropy toward the true class on forget-set images that have one
(unlearning the trigger), and distillation from the original model on the clean samples. The best epoch by
held-out attack success and accuracy wins, and the edit alone wins when no epoch beats it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bdscan.devices import autocast, prepare
from bdscan.observer import NULL_OBSERVER, Observer


@dataclass(frozen=True)
class RepairSettings:
    epochs: int = 10
    lr: float = 1e-4
    min_gain: float = 0.0  # an epoch must beat the edit alone by this much of the validation score
    batch_size: int = 32
    distill_weight: float = 1.0
    temperature: float = 2.0


@dataclass(frozen=True)
class RepairOutcome:
    used_repair: bool
    best_epoch: int  # 0 = the edit alone
    history: tuple[dict, ...]


def _mask_hooks(model: nn.Module, masks: dict[str, torch.Tensor]) -> list:
    handles = []
    for name, mask in masks.items():
        if not bool(mask.any()):
            continue
        module = model.get_submodule(name)
        for pname in ("weight", "bias"):
            p = getattr(module, pname, None)
            if isinstance(p, nn.Parameter):
                keep = (~mask).to(p.device, p.dtype).view((-1,) + (1,) * (p.dim() - 1))
                handles.append(p.register_hook(lambda g, keep=keep: g * keep))
    return handles


def augment(x: torch.Tensor, g: torch.Generator, shift: float = 0.1, mix: float = 0.5) -> torch.Tensor:
    """Small random translations, and mixup of pairs for part of the batch.

    The teacher labels these images, so distillation constrains the student far beyond the few samples.
    """
    n = len(x)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(n, 2, generator=g) * 2 - 1) * shift
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    k = int(n * mix)
    if k and n > 1:
        perm = torch.randperm(n, generator=g)[:k].to(x.device)
        lam = torch.rand(k, 1, 1, 1, generator=g).to(x.device)
        out[:k] = lam * out[:k] + (1 - lam) * out[perm]
    return out


def score(fidelity: float, asr: float | None, asr_bar: float) -> float:
    """How good an edited model is: attack success above half the bar costs 3x its share; below that the
    backdoor counts as removed and agreement with the original on clean images decides (chasing the last
    held-out image or two cost points of accuracy)."""
    return fidelity - 3.0 * max(0.0, (asr or 0.0) - asr_bar / 2)


def repair(
    model: nn.Module, teacher: nn.Module, masks: dict[str, torch.Tensor], *, train: tuple[torch.Tensor, torch.Tensor],
    forget_train: tuple[torch.Tensor, torch.Tensor] | None, validate, settings: RepairSettings = RepairSettings(),
    device: torch.device = torch.device("cpu"), seed: int = 0, observer: Observer = NULL_OBSERVER, asr_bar: float = 0.02,
    inner=None,
) -> tuple[nn.Module, RepairOutcome]:
    """Fine-tune ``model`` (pixel-space) in place of a copy; ``validate(model) -> (acc, asr, fidelity)`` picks the epoch
    (fidelity: agreement with the original on held-out clean images).

    ``inner(model)`` names the module whose sub-module names ``masks`` uses (the wrapped network).
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    work = prepare(copy.deepcopy(model), device)
    work.eval()  # BatchNorm statistics frozen, dropout off
    teacher = teacher.to(device).eval()
    x, y = (t.to(device) for t in train)
    xf, yf = forget_train if forget_train is not None else (train[0][:0], train[1][:0])
    keep_f = yf >= 0  # unlabelled trigger images cannot be taught their true class
    xf, yf = xf[keep_f].to(device), yf[keep_f].to(device)
    handles = _mask_hooks(inner(work) if inner else work, masks)
    params = [p for p in work.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr)
    amp = autocast(device)
    acc0, asr0, fid0 = validate(work)
    best = (score(fid0, asr0, asr_bar), 0, copy.deepcopy(work.state_dict()))
    history = [{"epoch": 0, "accuracy": acc0, "asr": asr0, "fidelity": fid0}]
    bs = settings.batch_size
    t = settings.temperature
    observer.start("repair", "repair fine-tune", settings.epochs)
    try:
        for epoch in range(1, settings.epochs + 1):
            order = torch.randperm(len(x), generator=g).to(device)
            for i in range(0, len(order), bs):
                idx = order[i:i + bs]
                xb, yb = x[idx], y[idx]
                xa = augment(xb, g)
                with torch.no_grad(), amp:
                    soft = teacher(xa).float()
                parts = [xb, xa]
                if len(xf):
                    fidx = torch.randint(0, len(xf), (min(bs, len(xf)),), generator=g).to(device)
                    parts.append(augment(xf[fidx], g, mix=0.0))
                with amp:
                    logits = work(torch.cat(parts)).float()
                n = len(xb)
                loss = F.cross_entropy(logits[:n], yb)
                kd = F.kl_div(F.log_softmax(logits[n:2 * n] / t, 1), F.softmax(soft / t, 1), reduction="batchmean")
                loss = loss + settings.distill_weight * kd * t * t
                if len(xf):
                    loss = loss + F.cross_entropy(logits[2 * n:], yf[fidx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            acc, asr, fid = validate(work)
            history.append({"epoch": epoch, "accuracy": acc, "asr": asr, "fidelity": fid})
            value = score(fid, asr, asr_bar)
            if value > best[0] + (settings.min_gain if best[1] == 0 else 0.0) + 1e-9:
                best = (value, epoch, copy.deepcopy(work.state_dict()))
            observer.advance("repair")
    finally:
        for h in handles:
            h.remove()
        observer.finish("repair")
    work.load_state_dict(best[2])
    return work, RepairOutcome(best[1] > 0, best[1], tuple(history))
