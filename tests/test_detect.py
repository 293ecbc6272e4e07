"""Trigger families of detect.py: the warp and its pictures, mixed forget-set triggers, the warp rule, what
the warp search finds on the bundled clean model (the property the warp rule rests on), the feature shift and
the agreement rule that scores it together with the mask anomaly, the activation excess (evidence), several searches,
scoring against a trusted reference model, and the carry of a trigger to proxy models trained on the samples."""

from __future__ import annotations

import math
import os
from dataclasses import replace

import pytest
import torch

from bdscan.data import load_samples
from bdscan.detect import (LOG_SPREAD_FLOOR, BlendSettings, CarrySettings, Detection, InversionSettings, Reference,
                           Trigger, TriggerMix, WarpSettings, _warp_trigger, blend_anomaly, blind_spots, carry,
                           consensus, detect, detect_searches, invert_blends, invert_triggers, invert_warps, relative_to, search_blends,
                           shared_proxies, train_proxies, warp_anomaly, warp_images, warp_is_suspicious)
from bdscan.devices import inference_copy
from bdscan.model import Normalized, load_model
from tests.conftest import EXAMPLES


def test_warp_zero_flow_is_identity_and_whole_pixel_flow_shifts():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 12, 12, generator=g)
    assert torch.allclose(warp_images(x, torch.zeros(2, 12, 12)), x, atol=1e-6)
    flow = torch.zeros(2, 12, 12)
    flow[0] = 1.0  # every output pixel samples one pixel to its right
    out = warp_images(x, flow)
    assert torch.allclose(out[..., :, :-1], x[..., :, 1:], atol=1e-5)
    assert torch.allclose(out[..., :, -1], x[..., :, -1], atol=1e-5)  # border pixels repeat


def test_trigger_mix_applies_each_part_to_alternate_images():
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 8, 8)
    mask[:, :2, :2] = 1.0
    patch = Trigger(3, mask, torch.ones(1, 8, 8), float(mask.mean()), 1.0)
    flow = torch.zeros(2, 8, 8)
    flow[1] = 0.5
    warp = _warp_trigger(3, flow, 0.5, 0.95)
    mix = TriggerMix((patch, warp))
    out = mix.apply(x)
    assert torch.equal(out[0::2], patch.apply(x[0::2]))
    assert torch.equal(out[1::2], warp.apply(x[1::2]))
    assert mix.kind == "mask+warp" and mix.target == 3 and mix.mask_l1 == patch.mask_l1
    assert TriggerMix((patch, patch)).kind == "mask"
    assert warp.kind == "warp" and warp.displacement == 0.5


@pytest.mark.parametrize("search", [invert_triggers, invert_warps, invert_blends])
def test_searches_never_run_the_model_on_a_class_s_own_images(search):
    """Each step applies every class's candidate to a batch, and an image of the class itself does not count:
    the model sees only the other rows (with 3 classes, two of every three)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 8, 8, generator=g), torch.arange(3).repeat(4)
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(64, 3)

        def forward(self, xs):
            seen.append(len(xs))
            return self.head(xs.flatten(1))

    settings = {invert_triggers: InversionSettings, invert_warps: WarpSettings, invert_blends: BlendSettings}[search]
    found = search(Probe(), x, y, [0, 1, 2], settings=settings(steps=5, batch=6, patience=100))
    assert seen == [2 * 6] * 5
    assert sorted(found) == [0, 1, 2]


def test_warp_rule_and_anomaly_agree():
    cap, threshold = 1.0, 2.0
    edge = cap * math.exp(-threshold * LOG_SPREAD_FLOOR)  # the largest warp the rule flags
    flow = torch.zeros(2, 4, 4)
    warps = {k: _warp_trigger(k, flow, math.inf, 0.0) for k in range(10)}
    warps[4] = _warp_trigger(4, flow, edge * 0.9, 0.95)
    warps[7] = _warp_trigger(7, flow, edge * 1.1, 0.95)
    a = warp_anomaly(warps, cap)
    assert int(a.argmax()) == 4 and a[4] > threshold and a[7] < threshold
    assert float(a[0]) == 0.0  # unreachable classes sit at the cap
    assert warp_is_suspicious(warps[4], cap, threshold) and not warp_is_suspicious(warps[7], cap, threshold)
    assert not warp_is_suspicious(warps[0], cap, threshold)  # no warp found


def test_no_small_warp_reaches_any_class_of_the_bundled_clean_model():
    loaded = load_model(EXAMPLES / "models" / "clean-cnn.safetensors")
    model = Normalized(loaded.module, loaded.spec).eval()
    s = load_samples(EXAMPLES / "samples", loaded.spec, min_per_class=2)
    settings = WarpSettings(steps=150)
    warps = invert_warps(model, s.x, s.y, list(range(10)), settings=settings)
    assert not any(warp_is_suspicious(w, settings.cap, 2.0) for w in warps.values())
    assert all(not math.isfinite(w.displacement) or w.displacement > 0.3 for w in warps.values())


def _blend(k: int, ratio: float) -> Trigger:
    return Trigger(k, torch.full((1, 4, 4), ratio), torch.ones(1, 4, 4), ratio, 0.95, blend=ratio)


def test_a_blend_trigger_mixes_its_pattern_into_the_whole_image_and_its_anomaly_is_on_the_log_ratio():
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    b = _blend(5, 0.25)
    assert b.kind == "blend" and torch.allclose(b.apply(x), 0.75 * x + 0.25)
    floor, threshold = BlendSettings().spread_floor, 2.0
    # ratios alike but for two classes: the floor sets the scale, so a class needs a log ratio to the median of
    # more than threshold * floor to pass
    edge = 0.2 * math.exp(-threshold * floor)
    blends = {k: _blend(k, 0.2) for k in range(10)}
    blends[3], blends[6] = _blend(3, edge * 0.9), _blend(6, edge * 1.1)
    a = blend_anomaly(blends, floor)
    assert int(a.argmax()) == 3 and a[3] > threshold and a[6] < threshold and float(a[0]) == 0.0


def test_no_blend_reaches_a_class_of_the_bundled_models_far_below_the_others_but_the_backdoor_is_not_one():
    """The property the blend family rests on, on the bundled models: the clean CNN has no class a weak blend
    reaches far more easily than the rest; the BadNets CNN's patch is no blend either (its target is not flagged
    by this family, the mask finds it)."""
    for name in ("clean-cnn", "badnets-cnn"):
        loaded = load_model(EXAMPLES / "models" / f"{name}.safetensors")
        s = load_samples(EXAMPLES / "samples", loaded.spec, min_per_class=2)
        # the folded copy detection and clean search
        model = inference_copy(Normalized(loaded.module, loaded.spec).eval(), s.x[:32])
        blends, anomaly = search_blends(model, s.x, s.y, list(range(10)))
        assert all(0.0 < b.blend <= 1.0 and b.kind == "blend" for b in blends.values())
        assert float(anomaly.max()) < 2.0, name


class _Route:
    """A route to a class as feature_shift sees it: anything with ``apply``."""

    def __init__(self, fn):
        self.apply = fn


@pytest.fixture(scope="module")
def two_routes():
    """The bundled BadNets CNN, its samples, its target, and two routes there: the backdoor's own patch, and mostly a
    real image of the target class (a natural route)."""
    from bdscan.lab.zoo import load_attack

    path = EXAMPLES / "models" / "badnets-cnn.safetensors"
    loaded = load_model(path)
    model = Normalized(loaded.module, loaded.spec).eval()
    s = load_samples(EXAMPLES / "samples", loaded.spec, min_per_class=2)
    attack = load_attack(path, loaded.spec)
    t = attack.target
    own = s.of_class(t).x[0]
    return model, s, t, {"real": _Route(attack.apply), "natural": _Route(lambda x: 0.2 * x + 0.8 * own)}


def test_feature_shift_tells_the_real_trigger_from_a_natural_route_to_the_target(two_routes):
    from bdscan.detect import feature_shift

    model, s, t, routes = two_routes
    other = s.not_class(t).x
    with torch.no_grad():  # both routes do reach the target: the comparison is between two ways there
        for route in routes.values():
            assert float((model(route.apply(other)).argmax(1) == t).float().mean()) >= 0.9
    shift = {name: float(feature_shift(model, s.x, s.y, {t: r}, 10)[t]) for name, r in routes.items()}
    assert shift["real"] > 2 * shift["natural"]


def test_activation_excess_tells_the_real_trigger_from_a_natural_route_to_the_target(two_routes):
    from bdscan.detect import activation_excess, head_features

    model, s, t, routes = two_routes
    excess = {}
    for name, route in routes.items():
        clean, triggered = head_features(model, s.x, s.y, {t: route}, 10)
        assert set(triggered) == {t} and len(triggered[t]) == int((s.y != t).sum())
        excess[name] = float(activation_excess(clean, triggered, 10)[t])
    # the patch drives head units past anything a clean sample reaches; a blend into a real image stays in range
    assert excess["real"] > 0.02 and excess["natural"] < excess["real"] / 4
    clean, _ = head_features(model, s.x, s.y, {}, 10)
    assert float(activation_excess(clean, {t: clean}, 10).max()) == 0.0  # clean features are within their own range


def test_feature_shift_needs_a_linear_head():
    from bdscan.detect import feature_shift

    conv_head = torch.nn.Sequential(torch.nn.Conv2d(1, 10, 28), torch.nn.Flatten())  # no nn.Linear at all
    x = torch.rand(20, 1, 28, 28)
    y = torch.arange(20) % 10
    assert feature_shift(conv_head, x, y, {}, 10) is None


def test_agreement_needs_both_signals():
    from bdscan.detect import agreement

    # (mask anomaly, feature anomaly) pairs as the scan table's reports have them: the clean resnet18's Trouser
    # class (feature shift alone), a clean CNN's Bag class (both moderate), the Blended CNN toward class 3 at seed 0
    nc = torch.tensor([0.18, 1.69, 1.86, -0.5])
    fa = torch.tensor([4.85, 1.63, 3.79, 6.0])
    a = agreement(nc, fa)
    assert a[0] < 2.0 and a[1] < 2.0 and a[2] > 2.0
    assert float(a[3]) == 0.0  # a class whose mask is larger than usual gets no agreement
    # never above the larger signal, never below the smaller: both must point at the class
    assert bool((a <= torch.maximum(nc, fa)).all()) and bool((a >= torch.minimum(nc, fa).clamp(min=0)).all())
    # a huge feature shift does not carry a mask barely out of the ordinary (a held-out clean CNN's T-shirt, 0.46 and
    # 23.84): below the floor a class gets no agreement, at or above it the same as without one
    nc, fa = torch.tensor([0.46, 1.10, 1.86]), torch.tensor([23.84, 7.57, 3.79])
    assert float(agreement(nc, fa)[0]) > 3.0
    floored = agreement(nc, fa, mask_floor=1.5)
    assert floored[:2].tolist() == [0.0, 0.0] and float(floored[2]) == float(agreement(nc, fa)[2])


def test_shown_trigger_is_the_family_that_scored():
    from dataclasses import replace

    from bdscan.detect import Detection

    mask = Trigger(0, torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), 0.1, 1.0)
    warp = _warp_trigger(0, torch.zeros(2, 4, 4), 0.1, 0.95)
    # the agreement (2.5) outscores the warp (2.0): the mask trigger it rests on is what the report shows
    d = Detection(True, 0, 2.5, {0: 1.5}, {0: 0.0}, {0: 0.1}, {0: mask}, 0.0, 2.0, {0: 2.0}, {0: warp}, {0: 4.2},
                  {0: 2.5})
    assert d.shown_trigger(0) is mask
    assert replace(d, agreement={0: 1.0}).shown_trigger(0) is warp
    # a blend shown where its anomaly is the largest of the three families, not otherwise
    blended = replace(d, blends={0: _blend(0, 0.05)}, blend_anomaly={0: 3.0})
    assert blended.shown_trigger(0) is blended.blends[0] and blended.class_scores()[0] == 3.0
    assert replace(blended, blend_anomaly={0: 2.2}).shown_trigger(0) is mask


def _detection(scores: dict[int, float], threshold: float = 2.0) -> Detection:
    k = max(scores, key=scores.get)
    hit = scores[k] > threshold
    return Detection(hit, k if hit else None, scores[k], dict(scores), {c: 0.0 for c in scores},
                     {c: 1.0 for c in scores}, {}, 1.5, threshold)


def test_consensus_flags_only_a_class_every_search_flags():
    # a natural class over the threshold at one search of three (as Bag in clean CNNs): no verdict
    runs = {0: _detection({0: 0.5, 8: 2.2}), 1: _detection({0: 0.4, 8: 1.9}), 2: _detection({0: 0.6, 8: 2.1})}
    d = consensus(runs)
    assert not d.suspected and d.target is None and d.score == pytest.approx(1.9)
    assert [s["suspected"] for s in d.searches] == [True, False, True] and [s["seed"] for s in d.searches] == [0, 1, 2]
    assert d.seconds == pytest.approx(4.5) and d.anomaly == runs[1].anomaly  # the search where it scored lowest
    # a class over the threshold at every search is flagged at its lowest score, even where another class led once
    runs = {3: _detection({0: 3.1, 8: 1.0}), 4: _detection({0: 2.4, 8: 2.9})}
    d = consensus(runs)
    assert d.suspected and d.target == 0 and d.score == pytest.approx(2.4) and d.anomaly == runs[4].anomaly
    assert [s["target_class"] for s in d.searches] == [0, 8]
    # one search is that search, unchanged
    one = _detection({0: 3.0, 1: 0.0})
    assert consensus({0: one}) is one


@pytest.mark.slow
def test_detect_searches_is_consensus_of_detect_at_consecutive_seeds():
    loaded = load_model(EXAMPLES / "models" / "badnets-cnn.safetensors")
    s = load_samples(EXAMPLES / "samples", loaded.spec, min_per_class=2)
    model = Normalized(loaded.module, loaded.spec).eval()
    x, y = s.x[::5], s.y[::5]  # two images per class: the combining is under test, not the search
    fast = dict(settings=InversionSettings(steps=20, batch=2), warp=None, carry_settings=None, blend=None)
    both = detect_searches(model, x, y, 10, searches=2, seed=3, **fast)
    alone = {seed: detect(model, x, y, 10, seed=seed, **fast) for seed in (3, 4)}
    expect = consensus(alone)
    assert [r["seed"] for r in both.searches] == [3, 4]
    assert (both.suspected, both.target, both.score) == (expect.suspected, expect.target, expect.score)
    lowest = {c: min(d.class_scores()[c] for d in alone.values()) for c in range(10)}
    assert both.score == pytest.approx(max(lowest.values()))
    with pytest.raises(ValueError):
        detect_searches(model, x, y, 10, searches=0, **fast)


def test_relative_to_divides_class_by_class():
    v = torch.tensor([0.01, 0.04, 0.02])
    assert relative_to(v, None, [0, 1, 2]) is v and relative_to(v, {}, [0, 1, 2]) is v
    assert relative_to(v, {0: 0.02, 1: 0.04, 2: 0.01}, [0, 1, 2]).tolist() == pytest.approx([0.5, 1.0, 2.0])
    # a class every image already goes to needs no mask in either model: as easy in both
    assert relative_to(torch.tensor([0.0, 0.02]), {0: 0.0, 1: 0.01}, [0, 1]).tolist() == pytest.approx([1.0, 2.0])


def _small_case():
    loaded = load_model(EXAMPLES / "models" / "badnets-cnn.safetensors")
    s = load_samples(EXAMPLES / "samples", loaded.spec, min_per_class=2)
    return Normalized(loaded.module, loaded.spec).eval(), s.x[::5], s.y[::5]


FAST = dict(settings=InversionSettings(steps=20, batch=2), warp=None, carry_settings=None, blend=None)


def test_a_model_scored_against_itself_has_no_mask_or_feature_anomaly():
    """The same search on the same weights finds the same masks: every ratio is 1, so no class stands out, while
    the model alone has classes apart. Proof that the reference's sizes are what gets scored."""
    model, x, y = _small_case()
    alone = detect(model, x, y, 10, seed=1, **FAST)
    assert max(abs(v) for v in alone.anomaly.values()) > 1e-3 and max(alone.feature_anomaly.values()) > 0.1
    against = detect(model, x, y, 10, seed=1, reference=alone, **FAST)
    assert set(against.anomaly.values()) == {0.0} and set(against.feature_anomaly.values()) == {0.0}
    assert against.mask_l1 == alone.mask_l1  # the suspect's own sizes are still what the report shows
    assert against.reference == {"mask_l1": alone.mask_l1, "feature_shift": alone.feature_shift, "blind_spots": {}}
    assert not against.suspected and alone.reference is None


def test_the_classes_a_reference_flags_itself_are_its_blind_spots():
    """A class the reference's own mask (or agreement) score flags is named: against it, a suspect's backdoor toward
    that class cannot stand out (the model scored against itself: nothing does, though the reference flags it)."""
    model, x, y = _small_case()
    probe = detect(model, x, y, 10, seed=1, **FAST)
    own = {k: max(v, probe.agreement[k]) for k, v in probe.anomaly.items()}
    top, second = sorted(own.values(), reverse=True)[:2]
    bar = (top + second) / 2  # a threshold that only the reference's highest class passes
    alone = detect(model, x, y, 10, seed=1, threshold=bar, **FAST)
    k = max(own, key=own.get)
    assert alone.suspected and alone.target == k and blind_spots(alone) == {k: own[k]}
    against = detect(model, x, y, 10, seed=1, threshold=bar, reference=alone, **FAST)
    assert not against.suspected and against.reference["blind_spots"] == {k: own[k]}
    assert blind_spots(detect(model, x, y, 10, seed=1, threshold=top + 1, **FAST)) == {}  # none over the bar


def test_reference_searches_run_once_per_seed_and_samples(monkeypatch):
    import bdscan.detect as detect_mod

    model, x, y = _small_case()
    calls = []
    real = detect_mod.detect
    monkeypatch.setattr(detect_mod, "detect", lambda m, *a, **k: calls.append((m, k.get("seed"))) or real(m, *a, **k))
    clean = load_model(EXAMPLES / "models" / "clean-cnn.safetensors")
    other = Normalized(clean.module, clean.spec).eval()
    ref = Reference(other, {"path": "clean-cnn.safetensors", "sha256": "00"})
    first = detect_searches(model, x, y, 10, searches=2, seed=4, reference=ref, **FAST)
    detect_searches(model, x, y, 10, searches=2, seed=4, reference=ref, **FAST)  # a second suspect, same samples
    assert [seed for m, seed in calls if m is other] == [4, 5]  # the reference searched once per seed
    assert [seed for m, seed in calls if m is model] == [4, 5, 4, 5]
    detect_searches(model, x.flip(0), y.flip(0), 10, searches=1, seed=4, reference=ref, **FAST)  # other samples
    assert [seed for m, seed in calls if m is other] == [4, 5, 4]
    assert first.reference["path"] == "clean-cnn.safetensors" and set(first.reference["mask_l1"]) == set(range(10))


@pytest.mark.parametrize("channels_last", [True, False])
def test_a_trigger_that_draws_the_class_carries_to_proxy_models_and_a_patch_does_not(channels_last):
    """Proxy models trained on the clean samples alone: the mean Bag image pasted over other classes' images raises
    Bag there by far more than the median class's trigger does; a corner patch, a shortcut they never learned,
    raises nothing. Images are restored: the global RNG is left as it was. Either memory layout (the shipped
    channels_last, or the default) trains proxies that tell them apart."""
    loaded = load_model(EXAMPLES / "models" / "clean-cnn.safetensors")
    s = load_samples(EXAMPLES / "samples", loaded.spec, min_per_class=2)
    patch = torch.zeros(1, 28, 28)
    patch[:, -4:-1, -4:-1] = 1.0
    triggers = {k: Trigger(k, patch, torch.ones(1, 28, 28), float(patch.mean()), 1.0) for k in range(10)}
    triggers[8] = Trigger(8, torch.ones(1, 28, 28), s.of_class(8).x.mean(0), 1.0, 1.0)
    state = torch.random.get_rng_state()
    settings = CarrySettings(proxies=2, steps=150, channels_last=channels_last)
    proxies = train_proxies(s.x, s.y, 10, settings)
    assert torch.equal(torch.random.get_rng_state(), state)
    conv = proxies[0].features[2][0].weight  # the second stage: a one-channel weight fits both layouts
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    c = carry(proxies, s.x, s.y, triggers)
    assert float(c[8]) > 4.0  # nats
    assert float(c.median()) == 0.0 and all(abs(float(c[k])) < 2.0 for k in range(8))


def test_models_scanned_on_the_same_samples_share_their_proxy_models(monkeypatch):
    """Proxies trained from fixed seeds on equal samples are equal models: the second model of a `scan` call reuses
    the first one's; other samples or settings train their own."""
    import bdscan.detect as detect_module

    monkeypatch.setattr(detect_module, "_SHARED", [])
    monkeypatch.setenv("BDSCAN_CACHE_DIR", "off")  # the in-memory sharing alone
    trained = []
    real = detect_module.train_proxies
    monkeypatch.setattr(detect_module, "train_proxies", lambda *a, **k: trained.append(1) or real(*a, **k))
    _, x, y = _small_case()
    settings = CarrySettings(proxies=2, steps=3)
    first = shared_proxies(x, y, 10, settings)
    assert shared_proxies(x.clone(), y.clone(), 10, settings) is first and len(trained) == 1
    assert shared_proxies(x.flip(-1), y, 10, settings) is not first and len(trained) == 2
    assert shared_proxies(x, y, 10, replace(settings, steps=4)) is not first and len(trained) == 3
    # what makes sharing safe: training again gives the very same weights
    for a, b in zip(first, real(x, y, 10, settings)):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


class _Said:
    def __init__(self):
        self.lines = []

    def __getattr__(self, name):
        return lambda *a, **k: None

    def message(self, text):
        self.lines.append(text)


def test_proxy_models_come_back_from_the_disk_cache_as_they_were_trained(tmp_path, monkeypatch):
    """A later process scanning against the same samples loads the proxies instead of training them: the very same
    weights, so the same carries. A damaged file is trained over, not trusted; other settings get their own file."""
    import bdscan.detect as detect_module

    cache = tmp_path / "cache"
    monkeypatch.setenv("BDSCAN_CACHE_DIR", str(cache))
    trained = []
    real = detect_module.train_proxies
    monkeypatch.setattr(detect_module, "train_proxies", lambda *a, **k: trained.append(1) or real(*a, **k))
    model, x, y = _small_case()
    settings = CarrySettings(proxies=2, steps=3)
    monkeypatch.setattr(detect_module, "_SHARED", [])
    first = shared_proxies(x, y, 10, settings)
    files = list(cache.iterdir())
    assert len(trained) == 1 and len(files) == 1 and files[0].suffix == ".safetensors"

    monkeypatch.setattr(detect_module, "_SHARED", [])  # a new process
    said = _Said()
    state = torch.random.get_rng_state()
    again = shared_proxies(x, y, 10, settings, said)
    assert len(trained) == 1 and any("loaded from the cache" in line for line in said.lines)
    assert torch.equal(torch.random.get_rng_state(), state)  # as training leaves it: a run is the same either way
    for a, b in zip(first, again):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
        assert b.features[2][0].weight.is_contiguous(memory_format=torch.channels_last)
        assert not b.training and torch.equal(a(x), b(x))

    files[0].write_bytes(b"not a safetensors file")
    monkeypatch.setattr(detect_module, "_SHARED", [])
    shared_proxies(x, y, 10, settings)
    assert len(trained) == 2 and files[0].stat().st_size > 100  # trained again and stored whole
    monkeypatch.setattr(detect_module, "_SHARED", [])
    shared_proxies(x, y, 10, replace(settings, steps=4))
    assert len(trained) == 3 and len(list(cache.iterdir())) == 2

    from bdscan import proxycache

    monkeypatch.setattr(proxycache, "KEEP", 2)  # the cache does not grow without end: the least recently used goes
    os.utime(files[0], (1, 1))
    monkeypatch.setattr(detect_module, "_SHARED", [])
    shared_proxies(x, y, 10, settings)  # loaded: now the most recently used
    monkeypatch.setattr(detect_module, "_SHARED", [])
    shared_proxies(x, y, 10, replace(settings, steps=5))
    assert len(trained) == 4 and files[0].exists() and len(list(cache.iterdir())) == 2


@pytest.mark.parametrize("where", ["off", "a-file/cache"])
def test_a_cache_turned_off_or_not_writable_is_passed_over(tmp_path, monkeypatch, where):
    import bdscan.detect as detect_module

    from bdscan import proxycache

    (tmp_path / "a-file").write_text("in the way")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BDSCAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert proxycache.cache_dir() == tmp_path / "xdg" / "bdscan"  # the default, where nothing says otherwise
    monkeypatch.setenv("BDSCAN_CACHE_DIR", where)
    monkeypatch.setattr(detect_module, "_SHARED", [])
    _, x, y = _small_case()
    proxies = shared_proxies(x, y, 10, CarrySettings(proxies=1, steps=2))
    assert len(proxies) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_class_needs_more_carry_the_more_anomalous_it_is():
    """The bar scales with the class's score: a class just over the threshold whose trigger carries a few nats is a
    natural route; the same carry at a backdoor's score is not enough."""
    rule = CarrySettings()
    assert rule.natural(2.1, 4.6) and rule.natural(4.5, 7.2)
    assert not rule.natural(3.1, 2.7) and not rule.natural(4.8, 2.7) and not rule.natural(2.1, -1.0)
    assert CarrySettings(bar=2.0).natural(2.1, 4.6) and not CarrySettings(bar=2.0).natural(2.5, 4.6)


def test_a_class_whose_trigger_carries_is_not_flagged():
    """A class over the threshold is flagged unless its trigger carries to the proxy models by more than the bar;
    the carry is only taken when some class passes the threshold, and a flag is decided on the rest."""
    model, x, y = _small_case()
    fast = {**FAST, "carry_settings": None}
    probe = detect(model, x, y, 10, seed=1, **fast)
    top, second = sorted(probe.class_scores().values(), reverse=True)[:2]
    bar = (top + second) / 2  # only the top class passes
    k = max(probe.class_scores(), key=probe.class_scores().get)
    quick = dict(proxies=1, steps=20)
    kept = detect(model, x, y, 10, seed=1, threshold=bar, **{**fast, "carry_settings": CarrySettings(bar=math.inf,
                                                                                                       **quick)})
    assert kept.suspected and kept.target == k and kept.natural == {} and set(kept.carry) == set(range(10))
    dropped = detect(model, x, y, 10, seed=1, threshold=bar, **{**fast, "carry_settings": CarrySettings(
        bar=-math.inf, **quick)})
    assert not dropped.suspected and dropped.natural == {k: pytest.approx(top)} and dropped.score == pytest.approx(
        second)
    assert dropped.class_scores() == kept.class_scores()  # scores are reported as they are
    none = detect(model, x, y, 10, seed=1, threshold=top + 1, **{**fast, "carry_settings": CarrySettings(**quick)})
    assert none.carry == {} and none.natural == {}  # nothing passed: no proxies trained


def test_consensus_leaves_out_a_class_natural_in_any_search():
    runs = {0: _detection({0: 2.5, 8: 2.6}), 1: _detection({0: 2.3, 8: 2.9})}
    assert consensus(runs).target == 8
    runs[1] = replace(runs[1], natural={8: 2.9})  # its trigger carried in the second search
    d = consensus(runs)
    assert d.suspected and d.target == 0 and d.score == pytest.approx(2.3)
