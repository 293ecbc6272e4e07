"""clean() and scan(): orchestration only; progress goes through an observer."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from bdscan import edit as editing
from bdscan.data import Samples, load_samples
from bdscan.detect import (BlendSettings, Detection, Reference, Trigger, TriggerMix, detect_searches, invert_triggers,
                           invert_warps, search_blends, warp_is_suspicious)
from bdscan.devices import inference_copy, prepare, resolve_device, with_backoff
from bdscan.errors import BdscanError, DataError, UnsupportedModelError, UsageError
from bdscan.evaluate import Evaluation, accuracy, agreement, attack_success, evaluate
from bdscan.model import LoadedModel, Normalized, load_model
from bdscan.observer import NULL_OBSERVER, Observer
from bdscan.profile import activations, choose_layers, importance
from bdscan.repair import RepairOutcome, repair
from bdscan.repair import score as edit_score
from bdscan.settings import CleanSettings


@dataclass
class Timer:
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, observer: Observer = NULL_OBSERVER):
        observer.stage(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0


def split(samples: Samples, holdout: float, seed: int) -> tuple[Samples, Samples]:
    """Stratified split into (held-in, held-out); every class with 2+ images keeps one on each side."""
    g = torch.Generator().manual_seed(seed)
    keep, out = [], []
    for k in torch.unique(samples.y).tolist():
        idx = torch.nonzero(samples.y == k).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_out = min(max(1, round(len(idx) * holdout)), len(idx) - 1) if len(idx) > 1 else 0
        out += idx[:n_out].tolist()
        keep += idx[n_out:].tolist()
    return samples.subset(sorted(keep)), samples.subset(sorted(out))


@dataclass(frozen=True)
class ForgetSet:
    mode: str  # "bdk", "target", "detected", "class"
    target: int | None
    train: Samples
    val: Samples
    trigger: Trigger | TriggerMix | None = None
    clean_train: torch.Tensor | None = None  # the same images without the trigger (synthesised triggers)
    real_val: Samples | None = None  # BDK: the user's held-out trigger images; the verdict rests on them too
    blend_search: dict | None = None  # target given: what the blend search found toward it, joined or not


@dataclass
class EditResult:
    plan: editing.EditPlan | None
    rounds: list[dict]
    ratios: dict[str, torch.Tensor]  # forget/retain activation ratio per unit, first round
    alpha_first: float | None
    remap: dict | None = None  # the closed-form head edit: layer, ridge, relative change, candidates


@dataclass
class CleanOutcome:
    loaded: LoadedModel
    settings: CleanSettings
    mode: str
    target: int | None
    removed: bool | None  # None: no backdoor found, nothing done
    module: nn.Module | None
    before: Evaluation | None
    after: Evaluation | None
    edit: EditResult | None
    repair: RepairOutcome | None
    detection: Detection | None
    trigger: Trigger | TriggerMix | None
    timings: dict[str, float]
    samples: dict
    val_inputs: torch.Tensor  # model-space inputs for the ONNX parity check
    device: str
    preview: torch.Tensor | None = None  # a few forget-set images (trigger applied), for the report
    blend_search: dict | None = None  # ForgetSet.blend_search


def _triggered(trigger: Trigger | TriggerMix, s: Samples, target: int) -> Samples:
    other = s.not_class(target)
    return Samples(trigger.apply(other.x), other.y, other.paths)


def forget_set(
    wrapper: nn.Module, spec_classes: int, held_in: Samples, held_out: Samples, settings: CleanSettings,
    trigger_samples: Samples | None, observer: Observer, timer: Timer, reference: Reference | None = None,
) -> tuple[ForgetSet | None, Detection | None]:
    t = settings.target_class
    if t is not None and not 0 <= t < spec_classes:
        raise UsageError(f"--target-class {t} is out of range for {spec_classes} classes")
    if trigger_samples is not None:
        tr, va = split(trigger_samples, settings.holdout, settings.seed) if len(trigger_samples) > 1 else (
            trigger_samples, trigger_samples)
        if t is None:  # the target is where the triggered images go
            with torch.no_grad():
                preds = torch.cat([wrapper(tr.x[i:i + 256]).argmax(1) for i in range(0, len(tr.x), 256)])
            t = int(torch.mode(preds).values)
        # a few dozen trigger images are too few to fit and to check an edit on: a trigger synthesised toward
        # the same target adds paired, augmentable images, and the real ones keep the edit honest
        trigger, _ = _synthesise(wrapper, held_in, t, settings, observer, timer)
        return ForgetSet("bdk", t, _triggered(trigger, held_in, t) + tr,
                         _triggered_val(trigger, held_out, t, settings.seed), trigger, held_in.not_class(t).x,
                         real_val=va if len(va) else None), None
    if settings.forget == "class":
        if t is None:
            raise UsageError("--forget class needs --target-class")
        return ForgetSet("class", t, held_in.of_class(t), held_out.of_class(t)), None
    detection = None
    mode = "target"
    if t is None:
        with timer.stage("detect", observer):
            detection = with_backoff(
                lambda b: detect_searches(wrapper, held_in.x, held_in.y, spec_classes,
                                          threshold=settings.detect_threshold,
                                          settings=replace(settings.inversion, batch=b), warp=settings.warp,
                                          seed=settings.seed, searches=settings.searches, reference=reference,
                                          observer=observer),
                settings.inversion.batch, minimum=2, say=observer.message)
        if not detection.suspected:
            return None, detection
        t, mode = detection.target, "detected"
        trigger, searched = _synthesise(wrapper, held_in, t, settings, observer, timer, detection)
    else:
        trigger, searched = _synthesise(wrapper, held_in, t, settings, observer, timer, classes=spec_classes)
    return ForgetSet(mode, t, _triggered(trigger, held_in, t), _triggered_val(trigger, held_out, t, settings.seed),
                     trigger, held_in.not_class(t).x, blend_search=searched), detection


def _synthesise(wrapper, held_in: Samples, t: int, settings: CleanSettings, observer: Observer, timer: Timer,
                detection: Detection | None = None,
                classes: int | None = None) -> tuple[Trigger | TriggerMix, dict | None]:
    """The forget-set trigger toward ``t``: the smallest mask trigger, a larger one from an early-stopped inversion,
    a warp where one small enough to flag exists, and a blend where its ratio toward ``t`` stands out. The smallest
    mask matches a patch; alone it cost more clean accuracy on image-wide triggers (SIG, low-frequency) in our tuning
    runs on lab models; the larger one covers them. A detection already holds the smallest mask, the warp and the
    blend for every class; with the target given, ``classes`` asks for the blend search over that many classes (its
    anomaly needs every class's ratio; a Blended backdoor no mask covered ended "not removed" without it). Also
    returns what that search found toward ``t`` (None where it did not run here), for the report."""

    def run(invert, inv_settings):
        return with_backoff(
            lambda b: invert(wrapper, held_in.x, held_in.y, [t], settings=replace(inv_settings, batch=b),
                             seed=settings.seed, observer=observer)[t],
            inv_settings.batch, minimum=2, say=observer.message)

    with timer.stage("synthesise trigger", observer):
        fine = detection.triggers[t] if detection is not None else run(invert_triggers, settings.inversion)
        coarse = run(invert_triggers, settings.coarse_inversion)
        warp = detection.warps.get(t) if detection is not None else run(invert_warps, settings.warp)
        if detection is not None:
            blend, score = detection.blends.get(t), detection.blend_anomaly.get(t, 0.0)
        elif classes is not None:
            blend, score = _blend_toward(wrapper, held_in, t, classes, settings, observer)
        else:
            blend, score = None, 0.0
    suspicious = warp is not None and warp_is_suspicious(warp, settings.warp.cap, settings.detect_threshold)
    blended = blend is not None and score > settings.detect_threshold
    if blended and detection is None:
        observer.message(f"a blend reaches class {t} at ratio {blend.blend:.3f}, far below the other classes "
                         f"(anomaly {score:.2f}): it joins the forget set")
    searched = ({"ratio": round(blend.blend, 4), "anomaly": round(score, 4), "threshold": settings.detect_threshold,
                 "joined": blended} if blend is not None and detection is None else None)
    return TriggerMix((fine, coarse) + ((warp,) if suspicious else ()) + ((blend,) if blended else ())), searched


def _blend_toward(wrapper, held_in: Samples, t: int, classes: int, settings: CleanSettings,
                  observer: Observer) -> tuple[Trigger, float]:
    """The blend toward ``t`` and its anomaly index, from detection's blend search over every class (run on the
    same folded copy detection searches)."""
    model = inference_copy(wrapper, held_in.x[:32].to(next(wrapper.parameters()).device))
    blends, anomaly = with_backoff(
        lambda b: search_blends(model, held_in.x, held_in.y, list(range(classes)),
                                settings=replace(BlendSettings(), batch=b), seed=settings.seed, observer=observer),
        settings.inversion.batch, minimum=2, say=observer.message)
    return blends[t], float(anomaly[t])


def _triggered_val(trigger: Trigger | TriggerMix, s: Samples, target: int, seed: int, copies: int = 3) -> Samples:
    """Held-out images with the synthesised trigger, plus shifted copies: a few dozen images alone make the
    2% bar a coin toss. The trigger is applied after the shift, so every copy carries it whole."""
    from bdscan.repair import augment

    other = s.not_class(target)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.cat([other.x] + [augment(other.x, g, mix=0.0) for _ in range(copies)])
    return Samples(trigger.apply(x), other.y.repeat(copies + 1), other.paths * (copies + 1))


def search_edit(
    inner: nn.Module, wrapper_of, forget: ForgetSet, retain: Samples, settings: CleanSettings, observer: Observer,
    validate=None,
) -> tuple[nn.Module, EditResult]:
    """Dampen units (the least intrusive plan that works, iterated), then remap the head in closed form."""
    layers = choose_layers(inner, settings.layers if isinstance(settings.layers, str) else list(settings.layers))
    normalise = wrapper_of(inner).normalise
    # damage is measured as disagreement with the original on many augmented clean images
    g = torch.Generator().manual_seed(settings.seed)
    fidelity = agreement(wrapper_of(inner), retain.x, g)

    acc_ref = 1.0
    asr_ref = attack_success(wrapper_of(inner), forget.train.x, forget.train.y, forget.target) or 0.0
    current, total_plan, rounds, first_ratios, alpha_first = inner, None, [], {}, None
    grid = [(a, lam) for a in settings.alphas for lam in settings.lambdas]
    for r in range(settings.rounds):
        i_f = importance(activations(current, layers, normalise(forget.train.x)))
        i_r = importance(activations(current, layers, normalise(retain.x)))
        if r == 0:
            first_ratios = editing.ratios(i_f, i_r)
        observer.start("edit", f"unit search, round {r + 1}", len(grid))
        tried = []
        for alpha, lam in grid:
            plan = editing.select(i_f, i_r, alpha, lam)
            observer.advance("edit")
            if plan.total_units == 0:
                continue
            edited = editing.dampen(current, plan, layers)
            w = wrapper_of(edited)
            acc = fidelity(w)
            asr = attack_success(w, forget.train.x, forget.train.y, forget.target) or 0.0
            tried.append((plan, edited, acc, asr))
        observer.finish("edit")
        # only edits that cost little accuracy and really lower the attack success are taken
        allowed = [c for c in tried if acc_ref - c[2] <= settings.max_acc_drop and c[3] < asr_ref - 0.05]
        if not allowed:
            break
        good = [c for c in allowed if c[3] <= settings.asr_bar]
        if good:  # best accuracy, then the fewest edited units
            plan, edited, acc, asr = max(good, key=lambda c: (c[2], -c[0].total_units, c[0].alpha))
        else:
            plan, edited, acc, asr = min(allowed, key=lambda c: (c[3] + max(0.0, acc_ref - c[2]), -c[2]))
        if r == 0:
            alpha_first = plan.alpha
        rounds.append({"round": r + 1, "alpha": plan.alpha, "lambda": plan.lam, "units": plan.total_units,
                       "fidelity": acc, "held_in_asr": asr})
        total_plan = plan if total_plan is None else editing.merge(total_plan, plan)
        current, asr_ref = edited, asr
        if asr <= settings.asr_bar:
            break
    remap = None
    if settings.remap and validate is not None and asr_ref > 0.0:
        current, remap = remap_head(current, wrapper_of, forget, retain, settings, validate, observer, g)
    return current, EditResult(total_plan, rounds, first_ratios, alpha_first, remap)


def _remap_data(model: nn.Module, head: str, normalise, forget: ForgetSet, retain: Samples, g: torch.Generator,
                copies: int = 4):
    """Head inputs for clean images (kept as they are) and for images with the synthesised trigger, what the head
    should output for those (their clean twin's output; pairs, augmented too), and which clean rows are the target
    class's own images. None without a trigger."""
    from bdscan.profile import layer_inputs
    from bdscan.repair import augment

    if forget.trigger is None or forget.clean_train is None:  # --forget class: nothing to remap
        return None
    layer = model.get_submodule(head)

    def inputs(x):
        return layer_inputs(model, head, normalise(x))

    h_r = inputs(torch.cat([retain.x] + [augment(retain.x, g) for _ in range(copies)]))
    clean = torch.cat([forget.clean_train] + [augment(forget.clean_train, g, mix=0.0) for _ in range(copies)])
    with torch.no_grad():
        targets = layer(inputs(clean).to(layer.weight.device)).double().cpu()
    return h_r, inputs(forget.trigger.apply(clean)), targets, (retain.y == forget.target).repeat(copies + 1)


def _target_weights(own: torch.Tensor, forget_rows: int, weight: float | None) -> torch.Tensor | None:
    """Per clean row, its weight in the remap's fit: ``weight`` on the target class's own images, 1 elsewhere;
    None balances them, so the target's clean images weigh as much as the triggered images together."""
    if weight is None:
        weight = forget_rows / max(1, int(own.sum()))
    return None if weight == 1.0 else torch.where(own, float(weight), 1.0)


def remap_head(inner, wrapper_of, forget: ForgetSet, retain: Samples, settings: CleanSettings, validate, observer, g):
    """Activation-guided closed-form edit of the classifier head; the ridge, and the weight of the target class's
    clean images in the fit, are chosen by fidelity to the original on augmented held-out clean images and by
    attack success on held-out triggered images."""
    from bdscan.profile import linear_layers

    candidates = linear_layers(inner)
    if not candidates:
        return inner, None
    normalise = wrapper_of(inner).normalise
    _, asr0, fid0 = validate(wrapper_of(inner))
    best = (edit_score(fid0, asr0, settings.asr_bar), inner, None)
    tried = []
    observer.start("remap", "layer remap", len(settings.ridges) * len(settings.remap_weights) * len(candidates))
    for layer in candidates:
        data = _remap_data(inner, layer, normalise, forget, retain, g)
        if data is None:
            return inner, None
        h_r, h_f, targets, own = data
        for tw in settings.remap_weights:  # the first listed wins ties
            weight = _target_weights(own, len(h_f), tw)
            for ridge in sorted(settings.ridges, reverse=True):  # least intrusive first: ties keep the larger ridge
                edited, change = editing.remap_layer(inner, layer, h_r, h_f, targets, ridge, weight)
                w = wrapper_of(edited)
                acc, asr, fid = validate(w)
                tried.append({"layer": layer, "ridge": ridge,
                              "target_weight": float(weight.max()) if weight is not None else 1.0,
                              "relative_change": change, "fidelity": fid, "val_accuracy": acc, "val_asr": asr})
                value = edit_score(fid, asr, settings.asr_bar)
                if value > best[0] + 1e-9:
                    best = (value, edited, tried[-1])
                observer.advance("remap")
    observer.finish("remap")
    chosen = best[2]
    return best[1], {"layer": chosen["layer"] if chosen else None, "applied": chosen is not None, "chosen": chosen,
                     "candidates": tried}


def clean(
    model_path: Path, samples_dir: Path, settings: CleanSettings = CleanSettings(), *, arch: str | None = None,
    mean=None, std=None, reference: TrustedModel | None = None, observer: Observer = NULL_OBSERVER,
) -> CleanOutcome:
    """``reference``: a trusted model detection is scored against (used only where detection runs)."""
    timer = Timer()
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    with timer.stage("load", observer):
        loaded = load_model(model_path, arch, mean, std)
        spec = loaded.spec
        samples = load_samples(samples_dir, spec, min_per_class=2)
        trig = None
        if settings.trigger_samples is not None:
            trig = load_samples(settings.trigger_samples, spec, min_per_class=1, allow_unlabelled=True)
    ref = reference.for_model(spec) if reference is not None else None
    inner = prepare(loaded.module, device).eval()

    def wrapper_of(m: nn.Module) -> Normalized:
        return Normalized(m, spec).to(device)

    original = wrapper_of(inner)
    held_in, held_out = split(samples, settings.holdout, settings.seed)
    if len(held_out) == 0:
        raise DataError("too few samples to hold any out; give at least 2 images per class")
    forget, detection = forget_set(original, spec.num_classes, held_in, held_out, settings, trig, observer, timer,
                                   ref)
    info = {"path": str(samples_dir), "images": len(samples), "held_in": len(held_in), "held_out": len(held_out),
            "classes": sorted(torch.unique(samples.y).tolist())}
    val_inputs = original.normalise(held_out.x[:64].to(device)).cpu()
    if forget is None:
        return CleanOutcome(loaded, settings, "detected", None, None, None, None, None, None, None, detection, None,
                            timer.stages, info, val_inputs, str(device))
    retain = held_in if forget.mode != "class" else held_in.not_class(forget.target)
    with timer.stage("evaluate", observer):
        # BDK reports attack success on the user's own held-out trigger images
        shown = forget.real_val if forget.real_val is not None else forget.val
        before = evaluate(original, held_out.x, held_out.y, spec.num_classes, shown.x, shown.y, forget.target)
    # agreement on augmented held-out images: the remap and the repair are fitted on the held-in images, and
    # accuracy on a few dozen held-out images moves 3 points per image
    fidelity = agreement(original, held_out.x, torch.Generator().manual_seed(settings.seed + 2))

    def validate(m: nn.Module):
        """(held-out accuracy, attack success, fidelity); in BDK the real trigger must fail as well as the
        synthesised one, so attack success is the larger of the two."""
        asr = attack_success(m, forget.val.x, forget.val.y, forget.target)
        if forget.real_val is not None:
            real = attack_success(m, forget.real_val.x, forget.real_val.y, forget.target)
            asr = real if asr is None else max(asr, real or 0.0)
        return accuracy(m, held_out.x, held_out.y), asr, fidelity(m)

    with timer.stage("edit", observer):
        edited, edit_result = search_edit(inner, wrapper_of, forget, retain, settings, observer, validate)
    result_module, outcome = edited, None
    if settings.repair and (edit_result.plan is not None or edit_result.remap):
        with timer.stage("repair", observer):
            repaired, outcome = with_backoff(lambda b: repair(
                wrapper_of(edited), original, edit_result.plan.masks() if edit_result.plan else {}, train=(held_in.x, held_in.y),
                forget_train=None if forget.mode == "class" else (forget.train.x, forget.train.y),
                validate=validate, settings=replace(settings.repair_settings, batch_size=b), device=device,
                seed=settings.seed, observer=observer, inner=lambda w: w.model, asr_bar=settings.asr_bar,
            ), settings.repair_settings.batch_size, minimum=2, say=observer.message)
            result_module = repaired.model
    final = wrapper_of(result_module)
    with timer.stage("evaluate", observer):
        after = evaluate(final, held_out.x, held_out.y, spec.num_classes, shown.x, shown.y, forget.target)
    _, asr_final, _ = validate(final)
    removed = asr_final is None or asr_final <= settings.asr_bar
    if forget.mode == "class":
        removed = edit_result.plan is not None or bool(edit_result.remap)
    return CleanOutcome(
        loaded, settings, forget.mode, forget.target, removed, result_module.eval(), before, after, edit_result,
        outcome, detection, forget.trigger, timer.stages, info, val_inputs, str(device), forget.val.x[:4].cpu(),
        forget.blend_search,
    )


class TrustedModel:
    """``--reference``: a trusted model of the same task (the last release, a model trained on vetted data), read
    once; its trigger searches are shared by every suspect scored against it (bdscan.detect.Reference)."""

    def __init__(self, path: Path, arch: str | None = None, mean=None, std=None, device: str = "auto"):
        try:
            self.loaded = load_model(path, arch, mean, std)
        except UnsupportedModelError as exc:  # a flag's file, not one of the inputs: a usage error
            raise UsageError(f"--reference {path}: {exc}") from None
        except BdscanError as exc:
            raise type(exc)(f"--reference {path}: {exc}") from None
        dev = resolve_device(device)
        wrapper = Normalized(prepare(self.loaded.module, dev).eval(), self.loaded.spec).to(dev)
        self.detector = Reference(wrapper, {"path": str(path), "sha256": self.loaded.sha256})
        self.path = path

    def for_model(self, spec) -> Reference:
        """The reference, once it is known to take the suspect's inputs and have its classes."""
        ref = self.loaded.spec
        if (ref.num_classes, tuple(ref.input_shape)) != (spec.num_classes, tuple(spec.input_shape)):
            shape = "x".join(str(v) for v in ref.input_shape)
            raise UsageError(
                f"--reference {self.path} has {ref.num_classes} classes and {shape} inputs; the model has "
                f"{spec.num_classes} and {'x'.join(str(v) for v in spec.input_shape)}: a reference must be a model "
                f"of the same task")
        return self.detector


@dataclass
class ScanOutcome:
    loaded: LoadedModel
    detection: Detection
    samples: int
    timings: dict[str, float]


def scan(
    model_path: Path, samples_dir: Path, *, threshold: float = 2.0, device: str = "auto", seed: int = 0,
    searches: int = 1, arch: str | None = None, mean=None, std=None, inversion=None, warp=None,
    reference: TrustedModel | None = None, observer: Observer = NULL_OBSERVER,
) -> ScanOutcome:
    from bdscan.detect import InversionSettings, WarpSettings

    warp = warp or WarpSettings()
    timer = Timer()
    dev = resolve_device(device)
    torch.manual_seed(seed)
    with timer.stage("load", observer):
        loaded = load_model(model_path, arch, mean, std)
        samples = load_samples(samples_dir, loaded.spec, min_per_class=2)
    ref = reference.for_model(loaded.spec) if reference is not None else None
    wrapper = Normalized(prepare(loaded.module, dev).eval(), loaded.spec).to(dev)
    base = inversion or InversionSettings()
    with timer.stage("detect", observer):
        detection = with_backoff(
            lambda b: detect_searches(wrapper, samples.x, samples.y, loaded.spec.num_classes, threshold=threshold,
                                      settings=replace(base, batch=b), warp=warp, seed=seed, searches=searches,
                                      reference=ref, observer=observer),
            base.batch, minimum=2, say=observer.message)
    return ScanOutcome(loaded, detection, len(samples), timer.stages)
