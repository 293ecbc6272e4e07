"""The grating family on lab models: per class, the weakest axis-aligned sinusoid that sends other classes' samples to it.

    python -m benchmarks.gratings [--held-out-7] [MODEL_NAME ...]

Per lab model (benchmarks.zoo, the bundled samples, as `bdscan scan` loads them): invert_gratings and grating_anomaly
below (GratingSettings(); not part of `bdscan scan`), the class the grating family alone would flag (anomaly over 2.0) and that
class's carry (bdscan.detect.carry: its grating tried on proxy models trained on the samples, CarrySettings()).
Prints a line per model and a summary: backdoored models whose target it flags, models where it flags another class,
clean models it flags (with and without the carry rule). The family has no seed: one run per model. Without names:
every 28-pixel lab model before the seventh held-out set; ``--held-out-7``: that set (trained after the cap was fixed).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from bdscan.detect import LOG_SPREAD_FLOOR, frozen, mad_anomaly
from bdscan.devices import full_precision
from bdscan.observer import NULL_OBSERVER, Observer

from benchmarks.carry import samples
from benchmarks.zoo import EVERY_MODEL, HELD_OUT_7_MODELS

CARRY_BAR = 2.0
THRESHOLD = 2.0


@dataclass(frozen=True)
class GratingSettings:
    """Axis-aligned sinusoids (each whole frequency along rows and along columns, sine and cosine phase) added to
    the samples: per class, the weakest that sends ``success_bar`` of other classes' images to it. A periodic
    trigger (SIG's horizontal sinusoid) is neither a small mask nor a warp."""
    cap: float = 0.5  # amplitude: gratings this strong or none count as natural (most classes reach none)
    floor: float = 0.02  # weakest amplitude tried
    success_bar: float = 0.95
    rungs: int = 16  # amplitudes tried on every grating, floor to cap evenly in log: a factor of 1.24 apart
    bisections: int = 3  # halvings between two rungs: a factor of about 1.03
    batch: int = 256  # images per forward pass


def grating_bank(c: int, h: int, w: int) -> list[tuple[str, torch.Tensor]]:
    """(name, C,H,W unit-amplitude grating): sine and cosine at every whole frequency along columns, then rows."""
    bank = []
    for axis, n in (("columns", w), ("rows", h)):
        t = torch.arange(n, dtype=torch.float64)
        for f in range(1, n // 2 + 1):
            for phase, wave in (("sin", torch.sin(2 * math.pi * f * t / n)), ("cos", torch.cos(2 * math.pi * f * t / n))):
                if float(wave.abs().max()) < 0.5:  # sine at the Nyquist frequency samples zeros
                    continue
                wave = wave.float()
                g = wave.view(1, 1, w).expand(c, h, w) if axis == "columns" else wave.view(1, h, 1).expand(c, h, w)
                bank.append((f"{phase} {f}/{n} along {axis}", g.contiguous()))
    return bank


def invert_gratings(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[int], *,
    settings: GratingSettings = GratingSettings(), observer: Observer = NULL_OBSERVER,
) -> dict[int, Grating]:
    """Per class, the weakest grating of :func:`grating_bank` that sends other classes' samples to it (amplitude:
    the lowest rung of a ladder that succeeds, refined by bisection in log space; ``inf`` where none up to
    ``settings.cap`` does). Deterministic: no seed."""
    with frozen(model), full_precision(next(model.parameters()).device), torch.no_grad():
        return _invert_gratings(model, x, y, classes, settings, observer)


def _invert_gratings(model, x, y, classes, settings: GratingSettings, observer: Observer) -> dict[int, Grating]:
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    _, c, h, w = x.shape
    others = torch.stack([y != k for k in classes]).float()  # K,N
    counts = others.sum(1).clamp(min=1)

    def success(g: torch.Tensor, a: float) -> torch.Tensor:
        """Per class: share of other classes' samples sent to it by grating ``g`` at amplitude ``a``."""
        pred = torch.cat([model((xb + a * g).clamp(0, 1)).argmax(1) for xb in x.split(settings.batch)])
        hit = (pred[None] == torch.tensor(classes, device=device)[:, None]).float()
        return ((hit * others).sum(1) / counts).cpu()

    best = torch.full((len(classes),), math.inf)
    best_g: list[torch.Tensor | None] = [None] * len(classes)
    best_succ = torch.zeros(len(classes))
    bank = grating_bank(c, h, w)
    levels = torch.logspace(math.log10(settings.floor), math.log10(settings.cap), settings.rungs)
    observer.start("grating", f"grating search ({len(bank)} gratings)", len(bank))
    try:
        for _, g in bank:
            g = g.to(device)
            # a ladder of amplitudes first: success is not monotone in the amplitude (a strong grating can send
            # images past the class a weaker one reaches), so the weakest success is looked for from below
            ladder = torch.stack([success(g, float(a)) for a in levels])  # L,K
            for i in range(len(classes)):
                ok = (ladder[:, i] >= settings.success_bar).nonzero().flatten()
                if not len(ok):
                    continue
                j = int(ok[0])
                hi, s_hi = float(levels[j]), float(ladder[j, i])
                if j > 0:  # refine between the last failing rung and the first succeeding one
                    lo = float(levels[j - 1])
                    for _ in range(settings.bisections):
                        mid = math.sqrt(lo * hi)
                        s_mid = float(success(g, mid)[i])
                        if s_mid >= settings.success_bar:
                            hi, s_hi = mid, s_mid
                        else:
                            lo = mid
                if hi < float(best[i]):
                    best[i], best_g[i], best_succ[i] = hi, g.cpu(), s_hi
            observer.advance("grating")
    finally:
        observer.finish("grating")
    out = {}
    for i, k in enumerate(classes):
        g = best_g[i] if best_g[i] is not None else torch.zeros(c, h, w)
        out[k] = _grating_trigger(k, g, float(best[i]), float(best_succ[i]))
    return out


@dataclass(frozen=True)
class Grating:
    """A class's weakest grating: what bdscan.detect.carry needs of a trigger (``apply``)."""
    target: int
    delta: torch.Tensor  # C,H,W: the grating at its amplitude (zeros where none reached the class)
    amplitude: float  # inf where no grating up to the cap reached the class
    success: float

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.delta.to(x.device)).clamp(0, 1)


def _grating_trigger(target: int, unit: torch.Tensor, amplitude: float, success: float) -> Grating:
    return Grating(target, (amplitude if math.isfinite(amplitude) else 0.0) * unit, amplitude, success)


def grating_anomaly(gratings: dict[int, Grating], cap: float) -> torch.Tensor:
    """Anomaly index per class of the grating amplitudes (log), amplitudes above ``cap`` (or none found) at the cap."""
    a = torch.tensor([min(gratings[k].amplitude, cap) for k in sorted(gratings)])
    return mad_anomaly(torch.log(a.clamp(min=1e-6)), min_spread=LOG_SPREAD_FLOOR)


def main(argv: list[str]) -> int:
    from bdscan.detect import CarrySettings, carry, train_proxies
    from bdscan.devices import inference_copy, keep_freed_memory
    from bdscan.model import Normalized, load_model

    keep_freed_memory()
    torch.set_num_threads(2)
    held = "--held-out-7" in argv
    names = [a for a in argv if not a.startswith("--")]
    held_names = [e.name for e in HELD_OUT_7_MODELS]
    entries = {e.name: e for e in EVERY_MODEL}
    if not names:
        names = held_names if held else [n for n, e in entries.items()
                                         if e.size == 28 and n not in held_names and e.path.exists()]
    x, y = samples()
    # the carry rule as it was when this family was measured (its logs): four proxies, a fixed 2-nat bar
    settings, carry_settings = GratingSettings(), CarrySettings(proxies=4)
    proxies = train_proxies(x, y, 10, carry_settings)
    print(f"grating cap {settings.cap}, success bar {settings.success_bar}, threshold {THRESHOLD}; carry bar "
          f"{CARRY_BAR} nats", flush=True)
    tally = {"bd": 0, "found": 0, "found_rule": 0, "wrong": 0, "clean": 0, "flagged": 0, "flagged_rule": 0}
    for name in names:
        entry = entries[name]
        loaded = load_model(entry.path)
        model = inference_copy(Normalized(loaded.module.eval(), loaded.spec), x[:32])
        t0 = time.perf_counter()
        gratings = invert_gratings(model, x, y, list(range(10)), settings=settings)
        seconds = time.perf_counter() - t0
        an = grating_anomaly(gratings, settings.cap)
        cv = carry(proxies, x, y, gratings, carry_settings.size)
        over = [k for k in range(10) if float(an[k]) > THRESHOLD]
        natural = [k for k in over if float(cv[k]) > CARRY_BAR]
        flag = max(over, key=lambda k: float(an[k])) if over else None
        kept = [k for k in over if k not in natural]
        flag_rule = max(kept, key=lambda k: float(an[k])) if kept else None
        target = entry.target if entry.attack else None
        if target is None:
            tally["clean"] += 1
            tally["flagged"] += flag is not None
            tally["flagged_rule"] += flag_rule is not None
        else:
            tally["bd"] += 1
            tally["found"] += flag == target
            tally["found_rule"] += flag_rule == target
            tally["wrong"] += flag is not None and flag != target
        reach = ", ".join(f"{k}: {gratings[k].amplitude:.3f} ({float(an[k]):.2f}, carry {float(cv[k]):+.2f})"
                          for k in range(10) if gratings[k].amplitude <= settings.cap) or "none"
        print(f"{name:16s} {entry.attack or 'clean':10s} target {'—' if target is None else target}: flagged "
              f"{'—' if flag is None else flag}, with the carry rule {'—' if flag_rule is None else flag_rule}; "
              f"classes reached under the cap (amplitude, anomaly, carry): {reach}; {seconds:.1f} s", flush=True)
    print(f"backdoored models with the target flagged by the gratings: {tally['found']} of {tally['bd']} "
          f"({tally['found_rule']} with the carry rule); another class flagged: {tally['wrong']}; clean models "
          f"flagged: {tally['flagged']} of {tally['clean']} ({tally['flagged_rule']} with the carry rule)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
