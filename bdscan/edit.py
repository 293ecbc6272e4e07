"""Activation-guided unit selection and dampening (METHOD.md steps 3 and 4).

Pure functions: ``dampen`` returns a new model and never touches the one it is given.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from bdscan.profile import UnitLayer


@dataclass(frozen=True)
class EditPlan:
    """Which units of which layers get which scale factor beta (< 1)."""

    alpha: float
    lam: float
    betas: dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> (units,) factors, 1 = untouched

    @property
    def units_per_layer(self) -> dict[str, int]:
        return {name: int((b < 1).sum()) for name, b in self.betas.items()}

    @property
    def total_units(self) -> int:
        return sum(self.units_per_layer.values())

    def masks(self) -> dict[str, torch.Tensor]:
        return {name: b < 1 for name, b in self.betas.items()}


def ratios(forget: dict[str, torch.Tensor], retain: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: forget[name] / retain[name] for name in forget}


def select(
    forget: dict[str, torch.Tensor], retain: dict[str, torch.Tensor], alpha: float, lam: float
) -> EditPlan:
    """U = {u : I_F(u) > alpha * I_R(u)}; beta_u = min(lambda * I_R(u) / I_F(u), 1) for u in U."""
    betas = {}
    for name, i_f in forget.items():
        i_r = retain[name]
        chosen = i_f > alpha * i_r
        beta = torch.clamp(lam * i_r / i_f, max=1.0)
        betas[name] = torch.where(chosen, beta, torch.ones_like(beta))
    return EditPlan(alpha, lam, betas)


def merge(first: EditPlan, second: EditPlan) -> EditPlan:
    """Two edits applied one after the other (iterated editing): factors multiply."""
    names = set(first.betas) | set(second.betas)
    betas = {}
    for n in names:
        a = first.betas.get(n)
        b = second.betas.get(n)
        betas[n] = a * b if a is not None and b is not None else (a if b is None else b)
    return EditPlan(second.alpha, second.lam, betas)


def _scale_rows(t: torch.Tensor | None, beta: torch.Tensor) -> None:
    if t is None:
        return
    shape = (-1,) + (1,) * (t.dim() - 1)
    t.mul_(beta.to(device=t.device, dtype=t.dtype).view(shape))


@torch.no_grad()
def dampen(model: nn.Module, plan: EditPlan, layers: list[UnitLayer]) -> nn.Module:
    """A copy of ``model`` whose selected units produce beta times their old output."""
    edited = copy.deepcopy(model)
    for name, beta in plan.betas.items():
        if bool((beta >= 1).all()):
            continue
        module = edited.get_submodule(name)
        # BN (gamma * xhat + b), conv filter or linear row: scaling weight rows and bias scales the unit
        _scale_rows(module.weight, beta)
        _scale_rows(module.bias, beta)
    return edited


def _with_bias(h: torch.Tensor) -> torch.Tensor:
    return torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype)], 1)


@torch.no_grad()
def remap_layer(
    model: nn.Module, name: str, h_retain: torch.Tensor, h_forget: torch.Tensor, out_forget: torch.Tensor,
    ridge: float, retain_weight: torch.Tensor | None = None,
) -> tuple[nn.Module, float]:
    """Closed-form, activation-guided edit of one linear layer (a copy of ``model`` is returned).

    Finds W' = W + D minimising  sum_R r |W'h - Wh|^2 + sum_F |W'h_F - o_F|^2 + mu |D|^2, i.e. clean inputs keep
    their outputs while triggered inputs are mapped to clean outputs ``out_forget``; r is each clean row's
    ``retain_weight`` (1 without). ``ridge`` scales mu by the mean activation energy, so it does not depend on the
    layer's scale. Returns (model, relative change of W).
    """
    edited = copy.deepcopy(model)
    layer = edited.get_submodule(name)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"{name} is {type(layer).__name__}, not Linear")
    w = layer.weight.detach().double().cpu()
    b = layer.bias.detach().double().cpu() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.double)
    wb = torch.cat([w, b[:, None]], 1)
    h = _with_bias(torch.cat([h_retain, h_forget]).double())
    target = torch.cat([_with_bias(h_retain.double()) @ wb.T, out_forget.double()])
    if retain_weight is not None:  # weighted least squares: rows scaled by the root of their weight
        root = torch.cat([retain_weight.double(), torch.ones(len(h_forget), dtype=torch.double)]).sqrt()[:, None]
        h, target = h * root, target * root
    gram = h.T @ h
    mu = ridge * float(gram.diagonal().mean())
    delta = torch.linalg.solve(gram + mu * torch.eye(gram.shape[0], dtype=torch.double), (target - h @ wb.T).T @ h, left=False)
    new = wb + delta
    dtype, device = layer.weight.dtype, layer.weight.device
    layer.weight.copy_(new[:, :-1].to(device=device, dtype=dtype))
    if layer.bias is not None:
        layer.bias.copy_(new[:, -1].to(device=device, dtype=dtype))
    return edited, float(delta.norm() / wb.norm())
