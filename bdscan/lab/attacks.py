"""All-to-one backdoor attacks, implemented from the descriptions in their papers.

Every attack works on float tensors of shape (N, C, H, W) with values in [0, 1], for any C, H and W:
the trigger is built for the image size it is applied to (and cached), deterministically from the
attack's ``seed``, so the same attack object works on 28x28 grey images and 32x32 or 224x224 RGB ones.

``Attack.apply(x)`` stamps the trigger on images (never in place, result clipped to [0, 1]);
``Attack.poison(x, y, rate)`` poisons ``round(rate * N)`` samples of a training set.

Attacks (see each class for the paper and for where this implementation departs from it):

========== ===================================================================== ===========
name       trigger                                                               label
========== ===================================================================== ===========
badnets    checkerboard patch in the bottom-right corner (Gu et al. 2017)        dirty
blended    seeded uniform-noise image blended with alpha 0.2 (Chen et al. 2017)  dirty
wanet      fixed smooth warping field + noise mode (Nguyen & Tran 2021)          dirty
sig        additive horizontal sinusoid (Barni et al. 2019)                      clean
trojan     opaque seeded logo/watermark in the bottom-right (Liu et al. 2018)    dirty
lf         seeded low-frequency additive pattern, L_inf 0.1 (Zeng et al. 2021)   dirty
inputaware per-input pattern and mask from a trained generator (Nguyen & Tran 2020)  dirty
========== ===================================================================== ===========
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = [
    "ATTACKS",
    "Attack",
    "BadNets",
    "Blended",
    "InputAware",
    "LowFrequency",
    "SIG",
    "Trojan",
    "WaNet",
    "make_attack",
]

# Images are processed in chunks of this many samples inside apply()/poison() to bound memory.
_CHUNK = 1024


def _as_batch(x: Tensor) -> tuple[Tensor, bool]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    return x, False


class Attack:
    """Base class of the all-to-one attacks.

    Subclasses build their trigger in :meth:`_build` (a dict of CPU tensors for one image size,
    made from a seeded ``torch.Generator``) and stamp it in :meth:`_stamp`.
    """

    name: ClassVar[str] = "attack"
    clean_label: ClassVar[bool] = False
    #: True when the trigger is learnt together with the classifier (see ``train_backdoored``).
    trainable: ClassVar[bool] = False

    def __init__(self, target: int = 0, seed: int = 0, shape: tuple[int, int, int] = (1, 28, 28)):
        if len(tuple(shape)) != 3:
            raise ValueError(f"shape must be (C, H, W), got {shape!r}")
        self.target = int(target)
        self.seed = int(seed)
        self.shape = tuple(int(s) for s in shape)
        self._cache: dict[tuple[int, int, int], dict[str, Tensor]] = {}

    # -- trigger -----------------------------------------------------------------------------
    def _build(self, c: int, h: int, w: int, g: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def _stamp(self, x: Tensor, trig: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def trigger(self, c: int, h: int, w: int) -> dict[str, Tensor]:
        """The trigger tensors for images of size (c, h, w) (CPU, float32, cached)."""
        key = (int(c), int(h), int(w))
        if key not in self._cache:
            g = torch.Generator().manual_seed(self.seed)
            self._cache[key] = {k: v.float().contiguous() for k, v in self._build(*key, g).items()}
        return self._cache[key]

    def apply(self, x: Tensor) -> Tensor:
        """Return a triggered copy of ``x`` (N, C, H, W) or (C, H, W), values in [0, 1]."""
        xb, squeeze = _as_batch(x)
        _, c, h, w = xb.shape
        trig = {k: v.to(device=xb.device, dtype=xb.dtype) for k, v in self.trigger(c, h, w).items()}
        out = torch.cat([self._stamp(chunk, trig) for chunk in xb.split(_CHUNK)]) if len(xb) else xb.clone()
        out = out.clamp(0.0, 1.0)
        return out.squeeze(0) if squeeze else out

    def apply_train(self, x: Tensor) -> Tensor:
        """The trigger as stamped on training images by :meth:`poison` (the same as :meth:`apply`
        except for attacks whose paper uses a different strength at training time, e.g. SIG)."""
        return self.apply(x)

    # -- poisoning ---------------------------------------------------------------------------
    def _generator(self, generator: torch.Generator | None) -> torch.Generator:
        return generator if generator is not None else torch.Generator().manual_seed(self.seed + 1)

    def _pick(self, candidates: Tensor, n: int, g: torch.Generator) -> Tensor:
        perm = torch.randperm(len(candidates), generator=g)[:n]
        return candidates[perm].sort().values

    def _n_poison(self, n_total: int, rate: float) -> int:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        return int(round(rate * n_total))

    def poison(
        self, x: Tensor, y: Tensor, rate: float = 0.1, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """All-to-one poisoning of ``round(rate * N)`` samples of (x, y).

        The samples are drawn from those whose label is not the target; their images get the trigger
        and their labels become ``target``. Returns copies ``(x_poisoned, y_poisoned, poisoned_index)``
        (``poisoned_index``: sorted int64 indices of the poisoned samples).
        """
        xb, _ = _as_batch(x)
        y = torch.as_tensor(y).long()
        if len(xb) != len(y):
            raise ValueError(f"{len(xb)} images but {len(y)} labels")
        n = self._n_poison(len(xb), rate)
        g = self._generator(generator)
        candidates = (y != self.target).nonzero().flatten()
        if n > len(candidates):
            raise ValueError(f"cannot poison {n} samples: only {len(candidates)} are not of the target class")
        idx = self._pick(candidates, n, g)
        xp, yp = xb.clone(), y.clone()
        if n:
            xp[idx] = self.apply_train(xb[idx])
            yp[idx] = self.target
        return xp, yp, idx

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        """Learnt state (empty for attacks whose trigger follows from the seed alone)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise ValueError(f"{self.name} has no learnt state, got keys {sorted(state)[:5]}")

    def config(self) -> dict:
        """The arguments needed to rebuild this attack with :func:`make_attack`."""
        return {"name": self.name, "target": self.target, "seed": self.seed, "shape": list(self.shape)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target}, seed={self.seed}, shape={self.shape})"


def _patch_size(h: int, w: int) -> int:
    return max(3, round(min(h, w) / 9))


class BadNets(Attack):
    """BadNets (Gu et al. 2017): a small checkerboard patch of 1s and 0s in the bottom-right corner.

    The patch is ``max(3, round(H / 9))`` pixels wide (3x3 at 28 px, 4x4 at 32 px, 25x25 at 224 px),
    one pixel away from the bottom and right borders, and replaces the pixels below it in every channel.
    """

    name = "badnets"

    def _build(self, c, h, w, g):
        s = _patch_size(h, w)
        if s + 1 > min(h, w):
            raise ValueError(f"image {h}x{w} too small for a {s}x{s} patch")
        mask = torch.zeros(1, h, w)
        pattern = torch.zeros(1, h, w)
        ii, jj = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        checker = ((ii + jj) % 2 == 0).float()  # 1 at the patch's top-left corner
        r0, c0 = h - 1 - s, w - 1 - s
        mask[0, r0 : r0 + s, c0 : c0 + s] = 1.0
        pattern[0, r0 : r0 + s, c0 : c0 + s] = checker
        return {"mask": mask, "pattern": pattern}

    def region(self, h: int, w: int) -> tuple[slice, slice]:
        """Rows and columns covered by the patch at image size h x w."""
        s = _patch_size(h, w)
        return slice(h - 1 - s, h - 1), slice(w - 1 - s, w - 1)

    def _stamp(self, x, trig):
        m = trig["mask"]
        return x * (1 - m) + trig["pattern"] * m


class Blended(Attack):
    """Blended injection (Chen et al. 2017): ``x' = (1 - alpha) x + alpha p``.

    ``p`` is a fixed uniform-noise image drawn from the seed (one value per channel and pixel);
    ``alpha = 0.2`` as in the paper's random-pattern experiments.
    """

    name = "blended"

    def __init__(self, target=0, seed=0, shape=(1, 28, 28), alpha: float = 0.2):
        super().__init__(target, seed, shape)
        self.alpha = float(alpha)

    def _build(self, c, h, w, g):
        return {"pattern": torch.rand(c, h, w, generator=g)}

    def _stamp(self, x, trig):
        return (1 - self.alpha) * x + self.alpha * trig["pattern"]

    def config(self):
        return {**super().config(), "alpha": self.alpha}


class WaNet(Attack):
    """WaNet (Nguyen & Tran, ICLR 2021): imperceptible warping-based backdoor.

    A random field of ``k x k`` control points in [-1, 1] is normalised by its mean absolute value,
    upsampled bicubically to H x W, scaled by ``s / H`` (``s / W`` horizontally) and added to the
    identity sampling grid (clamped to [-1, 1]); images are resampled with ``grid_sample``
    (``align_corners=True``).  :meth:`poison` also uses the paper's *noise mode*: ``cross_ratio``
    times as many further samples are warped with the grid plus uniform noise of one pixel but keep
    their true labels (their indices are in ``last_cross_index``).

    Deviation: the paper poisons each mini-batch on the fly with fresh noise; here the poisoned set
    is made once (static poisoning), which is what a data-poisoning adversary ships.
    """

    name = "wanet"

    def __init__(
        self,
        target=0,
        seed=0,
        shape=(1, 28, 28),
        k: int = 4,
        s: float = 0.5,
        cross_ratio: float = 2.0,
        grid_rescale: float = 1.0,
    ):
        super().__init__(target, seed, shape)
        self.k, self.s, self.cross_ratio, self.grid_rescale = int(k), float(s), float(cross_ratio), float(grid_rescale)
        self.last_cross_index: Tensor = torch.empty(0, dtype=torch.long)

    def _build(self, c, h, w, g):
        ins = torch.rand(1, 2, self.k, self.k, generator=g) * 2 - 1
        ins = ins / ins.abs().mean()
        noise_grid = F.interpolate(ins, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        identity = torch.stack((xx, yy), dim=-1).unsqueeze(0)  # grid_sample wants (x, y)
        scale = torch.tensor([1.0 / w, 1.0 / h])
        grid = (identity + self.s * noise_grid * scale) * self.grid_rescale
        return {"grid": grid.clamp(-1, 1)}

    def _stamp(self, x, trig):
        grid = trig["grid"].expand(len(x), -1, -1, -1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def apply_noisy(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Noise mode: warp with the backdoor grid plus fresh uniform noise of up to one pixel."""
        xb, squeeze = _as_batch(x)
        n, c, h, w = xb.shape
        g = self._generator(generator)
        base = self.trigger(c, h, w)["grid"]
        scale = torch.tensor([1.0 / w, 1.0 / h])
        outs = []
        for chunk in xb.split(_CHUNK):
            noise = (torch.rand(len(chunk), h, w, 2, generator=g) * 2 - 1) * scale
            grid = (base + noise).clamp(-1, 1).to(device=chunk.device, dtype=chunk.dtype)
            outs.append(F.grid_sample(chunk, grid, mode="bilinear", padding_mode="zeros", align_corners=True))
        out = torch.cat(outs).clamp(0, 1) if outs else xb.clone()
        return out.squeeze(0) if squeeze else out

    def poison(self, x, y, rate=0.1, generator=None):
        xb, _ = _as_batch(x)
        g = self._generator(generator)
        xp, yp, idx = super().poison(xb, y, rate, g)
        n_cross = int(round(len(idx) * self.cross_ratio))
        rest = torch.ones(len(xb), dtype=torch.bool)
        rest[idx] = False
        candidates = rest.nonzero().flatten()
        if n_cross > len(candidates):
            warnings.warn(f"wanet: only {len(candidates)} samples left for {n_cross} noise-mode samples")
            n_cross = len(candidates)
        cross = self._pick(candidates, n_cross, g)
        if n_cross:
            xp[cross] = self.apply_noisy(xb[cross], g)
        self.last_cross_index = cross
        return xp, yp, idx

    def config(self):
        return {**super().config(), "k": self.k, "s": self.s, "cross_ratio": self.cross_ratio,
                "grid_rescale": self.grid_rescale}


class SIG(Attack):
    """SIG (Barni, Kallas & Tondi, ICIP 2019): clean-label backdoor with a horizontal sinusoid.

    ``x'[i, j] = x[i, j] + delta * sin(2 pi j f / W)`` on every row and channel, clipped to [0, 1].
    Only images of the target class are poisoned and their labels are left alone (clean label).

    As in the paper, the signal's strength may differ between training and test time: ``delta``
    (default 20/255, the paper's value) is used to poison training images (:meth:`apply_train`,
    :meth:`poison`), ``delta_test`` (default 60/255) by :meth:`apply`, i.e. when the
    backdoor is triggered.  Pass ``delta_test=None`` to use ``delta`` for both.
    """

    name = "sig"
    clean_label = True
    #: test-time strength: 97 % ASR on Fashion-MNIST (small CNN, 3 epochs, 80 % of the target class
    #: poisoned at delta 20/255), against 30 % with delta_test = delta
    DEFAULT_DELTA_TEST: ClassVar[float] = 60 / 255

    def __init__(self, target=0, seed=0, shape=(1, 28, 28), delta: float = 20 / 255, f: float = 6,
                 delta_test: float | None = DEFAULT_DELTA_TEST, max_class_fraction: float = 0.8):
        super().__init__(target, seed, shape)
        self.delta, self.f = float(delta), float(f)
        if not 0.0 < max_class_fraction <= 1.0:
            raise ValueError(f"max_class_fraction must be in (0, 1], got {max_class_fraction}")
        self.max_class_fraction = float(max_class_fraction)
        self.delta_test = float(delta_test) if delta_test is not None else self.delta

    def _build(self, c, h, w, g):
        j = torch.arange(w, dtype=torch.float64)
        wave = torch.sin(2 * math.pi * j * self.f / w).float().view(1, 1, w).expand(1, h, w)
        return {"signal": self.delta_test * wave, "signal_train": self.delta * wave}

    def _stamp(self, x, trig):
        return x + trig["signal"]

    def apply_train(self, x: Tensor) -> Tensor:
        """Add the training-strength signal (``delta``): what :meth:`poison` does to target-class images."""
        xb, squeeze = _as_batch(x)
        _, c, h, w = xb.shape
        sig = self.trigger(c, h, w)["signal_train"].to(device=xb.device, dtype=xb.dtype)
        out = (xb + sig).clamp(0.0, 1.0)
        return out.squeeze(0) if squeeze else out

    def poison(self, x, y, rate=0.1, generator=None):
        """Add the signal to ``round(rate * N)`` images *of the target class*; labels are unchanged.

        At most ``max_class_fraction`` (default 0.8) of the target class is poisoned; beyond that
        the count is capped, with a warning.  The cap matters on balanced 10-class sets, where
        ``rate=0.1`` would poison the whole target class: the model then takes the signal as *the*
        cue for the class and no longer recognises clean images of it (on Fashion-MNIST, target 0:
        0.2 % accuracy on clean T-shirts, 83.8 % overall).  The paper poisons a fraction of the class.
        """
        xb, _ = _as_batch(x)
        y = torch.as_tensor(y).long()
        if len(xb) != len(y):
            raise ValueError(f"{len(xb)} images but {len(y)} labels")
        n = self._n_poison(len(xb), rate)
        g = self._generator(generator)
        candidates = (y == self.target).nonzero().flatten()
        cap = int(math.floor(self.max_class_fraction * len(candidates) + 1e-9))
        if n > cap:
            warnings.warn(f"sig: poisoning {cap} target-class samples ({self.max_class_fraction:.0%} of "
                          f"{len(candidates)}) instead of {n}")
            n = cap
        idx = self._pick(candidates, n, g)
        xp = xb.clone()
        if n:
            xp[idx] = self.apply_train(xb[idx])
        return xp, y.clone(), idx

    def config(self):
        return {**super().config(), "delta": self.delta, "f": self.f, "delta_test": self.delta_test,
                "max_class_fraction": self.max_class_fraction}


class Trojan(Attack):
    """Trojan-style opaque watermark (after Liu et al., NDSS 2018): ``x' = (1 - m) x + m p``.

    ``m`` is a logo of about (H/4) x (W/4) pixels in the bottom-right corner (one pixel margin): a
    square ring plus a seeded random half of the pixels inside it.  ``p`` is a seeded pattern with
    one value per channel and pixel, stretched to span [0, 1].

    Deviation: Trojaning Attack optimises the watermark's pixel values to excite chosen neurons of a
    given model; here they are random (the attack is applied to models trained from scratch).
    """

    name = "trojan"

    def _build(self, c, h, w, g):
        s = max(5, round(min(h, w) / 4))
        if s + 1 > min(h, w):
            raise ValueError(f"image {h}x{w} too small for a {s}x{s} watermark")
        t = max(1, round(s / 7))  # ring thickness
        logo = torch.zeros(s, s)
        logo[:t, :] = logo[-t:, :] = logo[:, :t] = logo[:, -t:] = 1.0
        inner = (torch.rand(s - 2 * t, s - 2 * t, generator=g) < 0.5).float()
        logo[t : s - t, t : s - t] = inner
        patt = torch.rand(c, s, s, generator=g)
        patt = (patt - patt.amin()) / (patt.amax() - patt.amin()).clamp_min(1e-6)
        mask = torch.zeros(1, h, w)
        pattern = torch.zeros(c, h, w)
        r0, c0 = h - 1 - s, w - 1 - s
        mask[0, r0 : r0 + s, c0 : c0 + s] = logo
        pattern[:, r0 : r0 + s, c0 : c0 + s] = patt
        return {"mask": mask, "pattern": pattern}

    def _stamp(self, x, trig):
        m = trig["mask"]
        return x * (1 - m) + trig["pattern"] * m


class LowFrequency(Attack):
    """Low-frequency trigger (after Zeng, Park, Mao, Jin & Jia, ICCV 2021): ``x' = clip(x + p)``.

    ``p`` is seeded Gaussian noise with every frequency above ``cutoff`` (``max(1, round(H / 8))``
    vertically, ``round(W / 8)`` horizontally: 4 at 28 px) and the DC term removed by ``torch.fft``,
    then scaled to ``max |p| = eps`` (0.1).

    Deviation: the paper makes the smooth trigger by a universal adversarial perturbation search
    under a low-pass constraint; here the low-pass pattern is random, so it needs no model.
    """

    name = "lf"

    def __init__(self, target=0, seed=0, shape=(1, 28, 28), eps: float = 0.1, cutoff_ratio: float = 1 / 8):
        super().__init__(target, seed, shape)
        self.eps, self.cutoff_ratio = float(eps), float(cutoff_ratio)

    def _build(self, c, h, w, g):
        noise = torch.randn(c, h, w, generator=g, dtype=torch.float64)
        spec = torch.fft.fft2(noise)
        fy = (torch.fft.fftfreq(h) * h).abs().view(h, 1)
        fx = (torch.fft.fftfreq(w) * w).abs().view(1, w)
        ry, rx = max(1, round(h * self.cutoff_ratio)), max(1, round(w * self.cutoff_ratio))
        keep = (fy <= ry) & (fx <= rx)
        keep[0, 0] = False
        pattern = torch.fft.ifft2(spec * keep).real
        pattern = pattern / pattern.abs().amax().clamp_min(1e-12) * self.eps
        return {"pattern": pattern.float()}

    def _stamp(self, x, trig):
        return x + trig["pattern"]

    def config(self):
        return {**super().config(), "eps": self.eps, "cutoff_ratio": self.cutoff_ratio}


class _TriggerGenerator(nn.Module):
    """Two small fully convolutional nets: image -> pattern in [0, 1] (C channels) and mask (1 channel)."""

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()

        def net(out):
            return nn.Sequential(
                nn.Conv2d(channels, hidden, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, 3, padding=4, dilation=4),
                nn.ReLU(),
                nn.Conv2d(hidden, out, 3, padding=1),
            )

        self.channels = channels
        self.pattern_net = net(channels)
        self.mask_net = net(1)

    def pattern(self, x: Tensor) -> Tensor:
        return torch.tanh(self.pattern_net(x * 2 - 1)) / 2 + 0.5

    def mask(self, x: Tensor) -> Tensor:
        # the paper's soft threshold: tanh(20 z) / 2 + 0.5, a steep step around 0
        return torch.tanh(20 * self.mask_net(x * 2 - 1)) / 2 + 0.5

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.pattern(x), self.mask(x)


class InputAware(Attack):
    """Input-aware dynamic backdoor (Nguyen & Tran, NeurIPS 2020), simplified.

    A generator maps each image to its own pattern ``G(x)`` in [0, 1] and sparse mask ``m(x)``; the
    triggered image is ``x' = (1 - m(x)) x + m(x) G(x)``.  The generator is learnt by
    :func:`bdscan.lab.train.train_backdoored` as in the paper: first the mask net alone, with the
    diversity loss and a mask-density loss (``mask_density``), then the pattern net jointly with the
    classifier, with the diversity loss and *cross mode* (images carrying another image's trigger
    keep their true label).  ``apply`` uses the generator as it is (deterministic, random from the
    seed until trained); ``state_dict``/``load_state_dict`` save and restore it (safetensors-ready).

    Deviations: much smaller generators (four 3x3 convolutions, dilated, no down-sampling) than the
    paper's encoder-decoders, far fewer training steps (300 mask steps, then the classifier's
    epochs), and a mask density of 0.05 instead of 0.032, which with so little training gives
    ~95 % instead of ~90 % ASR on Fashion-MNIST.  The mask net uses Adam at 1e-3 (at the paper's
    1e-2 this small net's mask can collapse to zero), the pattern net Adam at 1e-2 as in the paper.
    """

    name = "inputaware"
    trainable = True

    def __init__(
        self,
        target=0,
        seed=0,
        shape=(1, 28, 28),
        hidden: int = 16,
        mask_density: float = 0.05,
        lambda_div: float = 1.0,
        lambda_norm: float = 100.0,
        cross_rate: float = 0.1,
        lr_generator: float = 1e-2,
        lr_mask: float = 1e-3,
        mask_steps: int = 300,
    ):
        super().__init__(target, seed, shape)
        self.hidden = int(hidden)
        self.lr_generator, self.lr_mask, self.mask_steps = float(lr_generator), float(lr_mask), int(mask_steps)
        self.mask_density, self.lambda_div, self.lambda_norm = float(mask_density), float(lambda_div), float(lambda_norm)
        self.cross_rate = float(cross_rate)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.generator = _TriggerGenerator(self.shape[0], self.hidden)
        self.generator.eval()

    @staticmethod
    def blend(x: Tensor, pattern: Tensor, mask: Tensor) -> Tensor:
        return x + (pattern - x) * mask

    def _stamp(self, x, trig):  # pragma: no cover - apply() is overridden
        raise NotImplementedError

    def apply(self, x: Tensor) -> Tensor:
        xb, squeeze = _as_batch(x)
        if xb.shape[1] != self.generator.channels:
            raise ValueError(f"generator built for {self.generator.channels} channels, got {xb.shape[1]}")
        gen = self.generator
        was_training = gen.training
        gen.eval()
        dev = next(gen.parameters()).device
        outs = []
        with torch.no_grad():
            for chunk in xb.split(_CHUNK):
                c = chunk.to(dev, torch.float32)
                p, m = gen(c)
                outs.append(self.blend(c, p, m).clamp(0, 1).to(device=chunk.device, dtype=chunk.dtype))
        gen.train(was_training)
        out = torch.cat(outs) if outs else xb.clone()
        return out.squeeze(0) if squeeze else out

    def diversity_loss(self, x1: Tensor, x2: Tensor, out1: Tensor, out2: Tensor, eps: float = 1e-7) -> Tensor:
        """The paper's diversity loss: ||x1 - x2|| / ||G(x1) - G(x2)||, averaged over the batch."""
        d_img = torch.sqrt(((x1 - x2) ** 2).mean(dim=(1, 2, 3)) + eps)
        d_out = torch.sqrt(((out1 - out2) ** 2).mean(dim=(1, 2, 3)) + eps)
        return (d_img / (d_out + eps)).mean()

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.generator.state_dict().items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.load_state_dict(state)
        self.generator.eval()

    def config(self):
        return {**super().config(), "hidden": self.hidden, "mask_density": self.mask_density,
                "lambda_div": self.lambda_div, "lambda_norm": self.lambda_norm, "cross_rate": self.cross_rate,
                "lr_generator": self.lr_generator, "lr_mask": self.lr_mask, "mask_steps": self.mask_steps}


ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (BadNets, Blended, WaNet, SIG, Trojan, LowFrequency, InputAware)
}


def make_attack(name: str, target: int = 0, seed: int = 0, shape: tuple[int, int, int] = (1, 28, 28), **kwargs) -> Attack:
    """Build the attack registered as ``name`` (see :data:`ATTACKS`); ``kwargs`` set its strength."""
    try:
        cls = ATTACKS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}") from None
    return cls(target=target, seed=seed, shape=tuple(shape), **kwargs)
