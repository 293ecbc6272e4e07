"""Clean accuracy, per-class accuracy and attack success rate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    if len(x) == 0:
        return torch.empty(0, dtype=torch.long)
    return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    per_class: dict[int, float]
    asr: float | None  # share of forget-set images (not of the target class) classified as the target
    n_clean: int
    n_forget: int

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "per_class_accuracy": {str(k): v for k, v in self.per_class.items()},
            "attack_success_rate": self.asr,
            "n_clean": self.n_clean,
            "n_forget": self.n_forget,
        }


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x) == y).float().mean()) if len(x) else float("nan")


def attack_success(model: nn.Module, x_triggered: torch.Tensor, y_true: torch.Tensor, target: int | None) -> float | None:
    if target is None or len(x_triggered) == 0:
        return None
    keep = y_true != target  # unlabelled (-1) trigger samples count: their true class is unknown, not the target
    if not bool(keep.any()):
        return None
    return float((predict(model, x_triggered[keep]) == target).float().mean())


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
    forget_x: torch.Tensor | None = None, forget_y: torch.Tensor | None = None, target: int | None = None,
) -> Evaluation:
    pred = predict(model, x)
    per_class = {}
    for k in range(num_classes):
        sel = y == k
        if bool(sel.any()):
            per_class[k] = float((pred[sel] == k).float().mean())
    asr = None
    n_forget = 0
    if forget_x is not None and forget_y is not None:
        asr = attack_success(model, forget_x, forget_y, target)
        n_forget = int((forget_y != target).sum()) if target is not None else 0
    acc = float((pred == y).float().mean()) if len(y) else float("nan")
    return Evaluation(acc, per_class, asr, len(y), n_forget)


def agreement(reference: nn.Module, x: torch.Tensor, g: torch.Generator, copies: int = 7):
    """``m -> share of x and of its augmented copies on which m predicts what ``reference`` does``: how much an
    edit changes clean behaviour (a few dozen images alone hide losses that show on unseen data)."""
    from bdscan.repair import augment

    probe = torch.cat([x] + [augment(x, g) for _ in range(copies)])
    expected = predict(reference, probe)
    return lambda m: float((predict(m, probe) == expected).float().mean())
