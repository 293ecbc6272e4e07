"""Fast unit tests of the attack lab's triggers and poisoning (no model training)."""

import pytest
import torch

from bdscan.lab.attacks import ATTACKS, SIG, Attack, BadNets, InputAware, WaNet, make_attack

SHAPES = [(1, 28, 28), (3, 32, 32)]
NAMES = sorted(ATTACKS)


def images(shape, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g) * 0.8 + 0.1  # away from 0 and 1 so clipping cannot hide changes


def labels(n, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    y[: n // 5] = 0  # enough target-class samples for clean-label poisoning
    return y


def test_registry():
    assert set(NAMES) == {"badnets", "blended", "wanet", "sig", "trojan", "lf", "inputaware"}
    for name, cls in ATTACKS.items():
        assert issubclass(cls, Attack) and cls.name == name
        assert cls.clean_label == (name == "sig")
    with pytest.raises(ValueError):
        make_attack("nope")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_apply(name, shape):
    atk = make_attack(name, target=3, seed=7, shape=shape)
    x = images(shape)
    x_before = x.clone()
    out = atk.apply(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, x_before), "apply() modified its input"
    assert out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 1e-3, "some image unchanged by the trigger"
    # deterministic, also across objects built with the same seed
    assert torch.equal(out, atk.apply(x))
    assert torch.equal(out, make_attack(name, target=3, seed=7, shape=shape).apply(x))
    # a single (C, H, W) image works too
    assert torch.allclose(atk.apply(x[0]), out[0], atol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "inputaware"])
def test_seed_changes_trigger(name):
    shape = (3, 32, 32)
    x = images(shape, n=4)
    a, b = make_attack(name, seed=0, shape=shape), make_attack(name, seed=1, shape=shape)
    if name in ("badnets", "sig"):  # fixed triggers, the seed only drives poisoning
        assert torch.equal(a.apply(x), b.apply(x))
    else:
        assert not torch.equal(a.apply(x), b.apply(x))


@pytest.mark.parametrize("shape", SHAPES + [(3, 224, 224)])
def test_badnets_only_corner(shape):
    atk = BadNets(shape=shape)
    c, h, w = shape
    x = images(shape, n=2)
    diff = (atk.apply(x) - x).abs().sum(dim=(0, 1)) > 0
    rows, cols = atk.region(h, w)
    s = max(3, round(h / 9))
    assert rows.stop - rows.start == s and rows.stop == h - 1 and cols.stop == w - 1
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[rows, cols] = True
    assert diff[inside].all() and not diff[~inside].any()
    patch = atk.apply(x)[0, :, rows, cols]
    assert set(patch.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_poison(name, shape):
    n, rate, target = 200, 0.1, 0
    atk = make_attack(name, target=target, seed=1, shape=shape)
    x, y = images(shape, n=n), labels(n)
    x0, y0 = x.clone(), y.clone()
    xp, yp, idx = atk.poison(x, y, rate=rate, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, x0) and torch.equal(y, y0), "poison() modified its inputs"
    assert xp.shape == x.shape and yp.shape == y.shape
    assert len(idx) == round(rate * n) and len(set(idx.tolist())) == len(idx)
    assert xp.min() >= 0 and xp.max() <= 1
    assert torch.allclose(xp[idx], atk.apply_train(x[idx]), atol=1e-6)
    if atk.clean_label:
        assert torch.equal(yp, y) and (y[idx] == target).all()
    else:
        assert (yp[idx] == target).all() and (y[idx] != target).all()
        others = torch.ones(n, dtype=torch.bool)
        others[idx] = False
        assert torch.equal(yp[others], y[others])
    untouched = torch.ones(n, dtype=torch.bool)
    untouched[idx] = False
    if isinstance(atk, WaNet):
        cross = atk.last_cross_index
        assert len(cross) == round(len(idx) * atk.cross_ratio)
        assert not set(cross.tolist()) & set(idx.tolist())
        assert torch.equal(yp[cross], y[cross])  # noise mode keeps true labels
        assert (xp[cross] != x[cross]).flatten(1).any(1).all()
        untouched[cross] = False
    assert torch.equal(xp[untouched], x[untouched])
    # repeatable with the same generator seed
    xp2, yp2, idx2 = atk.poison(x, y, rate=rate, generator=torch.Generator().manual_seed(5))
    assert torch.equal(idx, idx2) and torch.equal(xp, xp2) and torch.equal(yp, yp2)


def test_sig_train_and_test_strength():
    x = images((1, 28, 28), n=4)
    atk = SIG(delta=0.05, delta_test=0.2)
    assert (atk.apply_train(x) - x).abs().max() <= 0.05 + 1e-6
    assert (atk.apply(x) - x).abs().max() > 0.15
    same = SIG(delta=0.05, delta_test=None)
    assert torch.equal(same.apply(x), same.apply_train(x))


def test_sig_caps_at_target_class():
    x, y = images((1, 28, 28), n=50), torch.arange(50) % 10  # 5 target samples, asks for 10
    with pytest.warns(UserWarning):
        _, yp, idx = SIG().poison(x, y, rate=0.2)
    assert len(idx) == 4 and torch.equal(yp, y)  # 80 % of the class by default
    with pytest.warns(UserWarning):
        _, _, idx = SIG(max_class_fraction=1.0).poison(x, y, rate=0.2)
    assert len(idx) == 5


def test_inputaware_state_roundtrip():
    shape = (3, 32, 32)
    a, b = InputAware(seed=0, shape=shape), InputAware(seed=1, shape=shape)
    x = images(shape, n=4)
    assert not torch.equal(a.apply(x), b.apply(x))
    state = a.state_dict()
    assert all(t.is_contiguous() and t.device.type == "cpu" for t in state.values())
    b.load_state_dict(state)
    assert torch.equal(a.apply(x), b.apply(x))


@pytest.mark.parametrize("name", NAMES)
def test_config_rebuilds_attack(name):
    shape = (3, 32, 32)
    atk = make_attack(name, target=2, seed=3, shape=shape)
    cfg = atk.config()
    assert cfg["name"] == name and cfg["target"] == 2 and cfg["seed"] == 3 and tuple(cfg["shape"]) == shape
    again = make_attack(**cfg)
    x = images(shape, n=3)
    assert torch.equal(atk.apply(x), again.apply(x))
