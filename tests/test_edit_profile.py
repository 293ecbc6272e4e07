import pytest
import torch
from torch import nn

from bdscan.edit import dampen, merge, remap_layer, select
from bdscan.profile import activations, choose_layers, hooks, importance, unit_layers


def tiny() -> nn.Module:
    """hidden = relu(W x + b) with W = I (3x3), b = 0; head 3 -> 2. Activations equal the inputs' positive part."""
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
        net[2].bias.zero_()
    return net


FORGET = torch.tensor([[1.0, 1.0, 8.0], [1.0, 1.0, 12.0]])  # unit 2 fires on the "trigger"
RETAIN = torch.tensor([[2.0, 1.0, 1.0], [2.0, 3.0, 1.0]])


def test_unit_layers_skip_head():
    assert [(u.name, u.kind, u.units) for u in unit_layers(tiny())] == [("0", "linear", 3)]


def test_importance_exact():
    net = tiny()
    layers = choose_layers(net, "all")
    i_f = importance(activations(net, layers, FORGET), eps=0.0)["0"]
    i_r = importance(activations(net, layers, RETAIN), eps=0.0)["0"]
    assert i_f.tolist() == [1.0, 1.0, 10.0]
    assert i_r.tolist() == [2.0, 2.0, 1.0]


def test_select_and_dampen_exact():
    net = tiny()
    layers = choose_layers(net, "all")
    i_f = importance(activations(net, layers, FORGET), eps=0.0)
    i_r = importance(activations(net, layers, RETAIN), eps=0.0)
    plan = select(i_f, i_r, alpha=5.0, lam=1.0)
    # only unit 2 has I_F > 5 I_R (10 > 5); beta = 1 * 1 / 10
    assert plan.units_per_layer == {"0": 1}
    assert torch.allclose(plan.betas["0"], torch.tensor([1.0, 1.0, 0.1]))
    edited = dampen(net, plan, layers)
    assert torch.allclose(edited[0].weight, torch.diag(torch.tensor([1.0, 1.0, 0.1])))
    assert torch.equal(net[0].weight, torch.eye(3)), "dampen must not modify its input"
    assert edited[0].weight.dtype == net[0].weight.dtype
    # the dampened unit's activation on the trigger drops by exactly beta
    a = activations(edited, layers, FORGET)["0"]
    assert torch.allclose(a[:, 2], torch.tensor([0.8, 1.2]))
    # lambda 0 zeroes the unit; alpha 20 selects nothing
    assert select(i_f, i_r, alpha=5.0, lam=0.0).betas["0"].tolist() == [1.0, 1.0, 0.0]
    assert select(i_f, i_r, alpha=20.0, lam=1.0).total_units == 0
    both = merge(plan, plan)
    assert torch.allclose(both.betas["0"], torch.tensor([1.0, 1.0, 0.01]))


def test_batchnorm_channel_dampening_scales_output():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)).eval()
    layers = unit_layers(net)
    assert [(u.name, u.kind) for u in layers] == [("1", "bn")]
    x = torch.rand(3, 1, 2, 2)
    before = activations(net, layers, x)["1"]
    plan = select({"1": torch.tensor([4.0, 1.0])}, {"1": torch.tensor([1.0, 1.0])}, alpha=2.0, lam=0.5)
    after = activations(dampen(net, plan, layers), layers, x)["1"]
    assert torch.allclose(after[:, 0], before[:, 0] * 0.125, atol=1e-6)
    assert torch.allclose(after[:, 1], before[:, 1])


def test_hooks_removed_after_failing_forward():
    net = tiny()
    layers = choose_layers(net, "all")
    store = {}
    with pytest.raises(RuntimeError):
        with hooks(net, layers, store):
            net(torch.rand(2, 5))  # wrong width: the forward pass fails
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    with pytest.raises(RuntimeError):
        activations(net, layers, torch.rand(2, 5))
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def _remap_problem():
    """Clean features live in the first 6 dims; the "trigger" adds a large 7th dim that the head reads as class 0."""
    g = torch.Generator().manual_seed(0)
    head = nn.Sequential(nn.Linear(7, 3))
    with torch.no_grad():
        head[0].weight.copy_(torch.randn(3, 7, generator=g))
        head[0].weight[:, 6] = torch.tensor([5.0, -2.0, -2.0])
    h_clean = torch.cat([torch.randn(200, 6, generator=g), torch.zeros(200, 1)], 1)
    twins = h_clean[:60]
    h_trig = twins.clone()
    h_trig[:, 6] = 3.0
    with torch.no_grad():
        wanted = head(twins)  # a triggered image should get its clean twin's output
    return head, h_clean, h_trig, wanted


def test_remap_layer_maps_trigger_to_clean_twin_and_keeps_clean_outputs():
    head, h_clean, h_trig, wanted = _remap_problem()
    before = head[0].weight.clone()
    with torch.no_grad():
        assert (head(h_trig).argmax(1) == 0).float().mean() > 0.9  # the backdoor works before the edit
    edited, change = remap_layer(head, "0", h_clean, h_trig, wanted, ridge=1e-6)
    with torch.no_grad():
        assert torch.allclose(edited(h_clean), head(h_clean), atol=1e-3)  # clean outputs kept
        assert torch.allclose(edited(h_trig), wanted, atol=1e-3)  # triggered inputs get their twin's output
    assert change > 0.0
    assert torch.equal(head[0].weight, before)  # the model given is not touched


def test_remap_layer_weighted_rows_keep_their_outputs():
    """The target class's own features share the trigger's direction: no linear edit serves both, and the rows
    given more weight keep their outputs better."""
    head, h_clean, h_trig, wanted = _remap_problem()
    g = torch.Generator().manual_seed(1)
    own = torch.cat([torch.randn(20, 6, generator=g), torch.full((20, 1), 1.5)], 1)
    rows = torch.cat([h_clean, own])
    with torch.no_grad():
        kept = head(own)
    assert (kept.argmax(1) == 0).float().mean() > 0.9

    def own_error(weight):
        edited, _ = remap_layer(head, "0", rows, h_trig, wanted, ridge=1e-3, retain_weight=weight)
        with torch.no_grad():
            return float((edited(own) - kept).pow(2).sum(1).mean()), edited

    heavy = torch.cat([torch.ones(len(h_clean)), torch.full((20,), 30.0)])
    plain, _ = own_error(None)
    weighted, edited = own_error(heavy)
    assert weighted < plain / 2
    assert torch.allclose(own_error(torch.ones(len(rows)))[0] * torch.ones(1), plain * torch.ones(1))


def test_remap_layer_ridge_limits_the_change():
    head, h_clean, h_trig, wanted = _remap_problem()
    _, small = remap_layer(head, "0", h_clean, h_trig, wanted, ridge=1e3)
    _, large = remap_layer(head, "0", h_clean, h_trig, wanted, ridge=1e-6)
    assert small < large / 10
    with pytest.raises(TypeError):
        remap_layer(nn.Sequential(nn.Conv2d(1, 1, 1)), "0", h_clean, h_trig, wanted, ridge=1.0)
