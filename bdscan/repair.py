"""Short repair fine-tune (METHOD.md step 5): edited units held, BatchNorm statistics frozen.

The model trains in eval mode, so BatchNorm keeps its running statistics (a few dozen images must not
overwrite them). Gradients of edited units are zeroed, so they stay at their dampened values. The loss is
cross-entropy on the clean samples, cross-entropy toward the true class on forget-set images that have one
(unlearning the trigger), and distillation from the original model on the clean samples. The best epoch by
held-out attack success and accuracy wins, and the edit alone wins when no epoch beats it.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bdscan.observer import NULL_OBSERVER, Observer


@dataclass(frozen=True)
class RepairSettings:
    epochs: int = 20
    lr: float = 1e-3
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


def _score(acc: float, asr: float | None) -> float:
    # removing the backdoor comes first; accuracy breaks ties
    return acc - 3.0 * (asr or 0.0)


def repair(
    model: nn.Module, teacher: nn.Module, masks: dict[str, torch.Tensor], *, train: tuple[torch.Tensor, torch.Tensor],
    forget_train: tuple[torch.Tensor, torch.Tensor] | None, validate, settings: RepairSettings = RepairSettings(),
    device: torch.device = torch.device("cpu"), seed: int = 0, observer: Observer = NULL_OBSERVER,
    inner=None,
) -> tuple[nn.Module, RepairOutcome]:
    """Fine-tune ``model`` (pixel-space) in place of a copy; ``validate(model) -> (acc, asr)`` picks the epoch.

    ``inner(model)`` names the module whose sub-module names ``masks`` uses (the wrapped network).
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    work = copy.deepcopy(model).to(device)
    work.eval()  # BatchNorm statistics frozen, dropout off
    teacher = teacher.to(device).eval()
    x, y = train
    xf, yf = forget_train if forget_train is not None else (x[:0], y[:0])
    keep_f = yf >= 0
    xf, yf = xf[keep_f], yf[keep_f]
    x_all = torch.cat([x, xf])
    y_all = torch.cat([y, yf])
    with torch.no_grad():
        soft = torch.cat([teacher(x[i:i + 256].to(device)).float().cpu() for i in range(0, len(x), 256)])
    is_clean = torch.cat([torch.ones(len(x), dtype=torch.bool), torch.zeros(len(xf), dtype=torch.bool)])
    soft_all = torch.cat([soft, torch.zeros(len(xf), soft.shape[1])])
    handles = _mask_hooks(inner(work) if inner else work, masks)
    params = [p for p in work.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr)
    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and torch.cuda.is_bf16_supported() else nullcontext()
    )
    acc0, asr0 = validate(work)
    best = (_score(acc0, asr0), 0, copy.deepcopy(work.state_dict()))
    history = [{"epoch": 0, "accuracy": acc0, "asr": asr0}]
    observer.start("repair", "repair fine-tune", settings.epochs)
    try:
        for epoch in range(1, settings.epochs + 1):
            order = torch.randperm(len(x_all), generator=g)
            for i in range(0, len(order), settings.batch_size):
                idx = order[i:i + settings.batch_size]
                xb = x_all[idx].to(device, non_blocking=True)
                yb = y_all[idx].to(device, non_blocking=True)
                cb = is_clean[idx].to(device)
                with amp:
                    logits = work(xb).float()
                loss = F.cross_entropy(logits, yb)
                if settings.distill_weight and bool(cb.any()):
                    t = settings.temperature
                    kd = F.kl_div(
                        F.log_softmax(logits[cb] / t, 1), F.softmax(soft_all[idx][cb.cpu()].to(device) / t, 1),
                        reduction="batchmean",
                    ) * t * t
                    loss = loss + settings.distill_weight * kd
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            acc, asr = validate(work)
            history.append({"epoch": epoch, "accuracy": acc, "asr": asr})
            score = _score(acc, asr)
            if score > best[0] + 1e-9:
                best = (score, epoch, copy.deepcopy(work.state_dict()))
            observer.advance("repair")
    finally:
        for h in handles:
            h.remove()
        observer.finish("repair")
    work.load_state_dict(best[2])
    return work, RepairOutcome(best[1] > 0, best[1], tuple(history))
