"""Learnable binary channel masks (method 1): costs, straight-through gradients, removal, widths."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from slimdepth.compress.graph import channel_groups
from slimdepth.compress.groups import ChannelGroup
from slimdepth.compress.masks import MaskSet, attach_masks
from slimdepth.deploy.cost import count_macs, count_parameters
from slimdepth.errors import ConfigError
from slimdepth.models.normalize import fold_normalization
from slimdepth.models.widths import WIDTHS_KEY, apply_widths, record_widths
from slimdepth.models.zoo import build_model

MODELS = ("resnet50-unet", "resnet18-unet", "litedepth", "tiny-multires", "fastdepth")
SIZE = (64, 96)
OUTPUTS = ("depth", "scales", "seg")


def calibrated(name: str, seed: int = 0) -> nn.Module:
    """A zoo model whose BatchNorm statistics come from a few random batches (sane activations)."""
    torch.manual_seed(seed)
    model = build_model(name)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(2, 3, *SIZE))
    return model.eval()


def outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(x, outputs=OUTPUTS)
    flat = [out["depth"]] + list(out.get("scales", [])) + list(out.get("seg", []))
    return [t.clone() for t in flat]


def switch_off_some(masks: MaskSet, fraction: float = 0.4, seed: int = 1) -> None:
    """Turn a random subset of masks off, and a whole group off (it must keep one channel)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for logits in masks.logits:
            logits[torch.rand(logits.shape, generator=g) < fraction] = -3.0
        masks.logits[len(masks.logits) // 2].fill_(-2.0)


@pytest.fixture(scope="module", params=MODELS)
def zoo(request: pytest.FixtureRequest) -> tuple[str, nn.Module, list[ChannelGroup]]:
    model = calibrated(request.param)
    return request.param, model, channel_groups(model, SIZE)


def test_masks_mask_then_apply_removes_channels(zoo) -> None:
    name, model, groups = zoo
    x = torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    reference = outputs(model, x)
    masks = attach_masks(model, groups)
    try:
        assert len(masks.logits) == len(groups) and all(bool((lg > 0).all()) for lg in masks.logits)
        # every mask on: the masked model is the model; costs are the measured ones
        for a, b in zip(outputs(model, x), reference):
            assert torch.equal(a, b)
        measured = count_macs(model, SIZE)
        ones = [torch.ones(g.channels) for g in groups]
        conv_part = float(masks.expected_macs(ones, include_other=False).detach())
        assert conv_part == pytest.approx(measured.by_kind["conv"] + measured.by_kind["matmul"], rel=0.01)
        assert float(masks.expected_macs(ones).detach()) == pytest.approx(measured.total, rel=1e-9)
        assert float(masks.expected_params(ones).detach()) == pytest.approx(count_parameters(model), rel=1e-9)
        assert masks.hard_macs() == measured.total == masks.original_macs

        switch_off_some(masks)
        masked = outputs(model, x)
        keep = masks.keep_indices()
        assert all(keep[g.root] for g in groups)
        hard_macs, hard_params = masks.hard_macs(), masks.hard_params()
        assert hard_macs < measured.total
    finally:
        masks.detach()
    pruned = masks.apply(model)
    assert not masks.attached and not model._forward_hooks
    for a, b in zip(outputs(model, x), reference):  # the original is untouched and unmasked again
        assert torch.equal(a, b)

    # a genuinely smaller dense model with the widths the masks chose and the same outputs
    for g in groups:
        assert pruned.get_submodule(g.root).out_channels == len(keep[g.root])
        for p in g.producers:
            layer = pruned.get_submodule(p)
            assert (layer.num_features if isinstance(layer, nn.BatchNorm2d) else layer.out_channels) == len(keep[g.root])
    assert count_parameters(pruned) == hard_params < count_parameters(model)
    assert count_macs(pruned, SIZE).total == hard_macs
    for a, b in zip(outputs(pruned, x), masked):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)

    # record + apply widths on a fresh default model: strict load gives the same network
    widths = record_widths(pruned)
    assert widths and pruned.config[WIDTHS_KEY] == widths
    widths = json.loads(json.dumps(widths))  # as a checkpoint sidecar stores it
    rebuilt = apply_widths(build_model(name), widths)
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    rebuilt.eval()
    for a, b in zip(outputs(rebuilt, x), outputs(pruned, x)):
        assert torch.equal(a, b)
    if hasattr(pruned, "encoder") and hasattr(pruned.encoder, "channels"):
        assert rebuilt.encoder.channels == pruned.encoder.channels != model.encoder.channels


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, list[ChannelGroup]]:
    model = calibrated("tiny-multires")
    return model, channel_groups(model, SIZE)


def test_gradients_reach_the_logits_through_the_straight_through_estimator(tiny) -> None:
    model, groups = tiny
    masks = attach_masks(model, groups)
    try:
        model.train()
        switch_off_some(masks)
        out = model(torch.rand(2, 3, *SIZE), outputs=("depth", "seg"))
        task = out["depth"].mean() + sum(s.square().mean() for s in out["seg"])
        task.backward()
        grads = [lg.grad.clone() for lg in masks.logits]
        assert all(g is not None for g in grads)
        # the gradient of the masks of switched-off channels flows too (sigmoid', not the 0/1 step)
        assert all(bool((g != 0).any()) for g in grads)
        assert any(bool((g[lg <= 0] != 0).any()) for g, lg in zip(grads, masks.logits))

        masks.zero_grad()
        loss = masks.compression_loss(0.2)
        assert loss.dtype == torch.float32 and float(loss.detach()) > 0
        loss.backward()
        # more channels -> more MACs: the penalty pushes every logit down
        assert all(bool((lg.grad > 0).all()) for lg in masks.logits)
    finally:
        masks.detach()
        model.eval()


def test_forward_masks_are_exactly_binary(tiny) -> None:
    model, groups = tiny
    masks = attach_masks(model, groups)
    seen: dict[str, torch.Tensor] = {}
    point = groups[0].mask_points[0]
    handle = model.get_submodule(point).register_forward_hook(lambda m, i, o: seen.setdefault("out", o.detach().clone()))
    try:
        with torch.no_grad():
            masks.logits[0][:3] = -1.0
        model.train()
        m = masks.mask(0)
        assert m.requires_grad and set(m.detach().unique().tolist()) == {0.0, 1.0}
        model(torch.rand(1, 3, *SIZE))
    finally:
        handle.remove()
        masks.detach()
        model.eval()
    # hooks run in registration order: the masking hook first, so this sees masked outputs
    assert bool((seen["out"][:, :3] == 0).all()) and bool((seen["out"][:, 3:] != 0).any())


def test_compression_loss_and_expected_costs(tiny) -> None:
    model, groups = tiny
    masks = attach_masks(model, groups)
    try:
        # at init p = sigmoid(3): expected cost below the original, so a 100% budget costs nothing
        assert float(masks.expected_macs().detach()) < masks.original_macs
        assert float(masks.compression_loss(1.0).detach()) == 0.0
        assert float(masks.compression_loss(1.0, estimate="expected").detach()) == 0.0
        assert float(masks.compression_loss(0.5, kind="params").detach()) > 0
        ratio = float(masks.expected_macs().detach()) / masks.original_macs
        expected = (ratio / 0.3 - 1) ** 2
        assert float(masks.compression_loss(0.3, estimate="expected").detach()) == pytest.approx(expected, rel=1e-5)
        # the binary estimate prices the hard masks: all on at init, so the whole network
        assert float(masks.compression_loss(0.3).detach()) == pytest.approx((1 / 0.3 - 1) ** 2, rel=1e-5)
        half = [torch.full((g.channels,), 0.5) for g in groups]
        assert float(masks.expected_macs(half).detach()) < float(masks.expected_macs().detach())
        with pytest.raises(ConfigError):
            masks.compression_loss(0.0)
        with pytest.raises(ConfigError):
            masks.compression_loss(0.5, kind="latency")
        with pytest.raises(ConfigError):
            masks.compression_loss(0.5, estimate="soft")
    finally:
        masks.detach()


def test_expected_macs_formula_on_a_small_network() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(4), nn.ReLU(),  # depthwise
        nn.Conv2d(4, 5, 1), nn.ReLU(),
        nn.Conv2d(5, 1, 3, padding=1),
    ).eval()
    groups = channel_groups(net, (8, 8))
    assert [g.root for g in groups] == ["0", "6"]
    assert groups[0].depthwise == ("3",) and groups[0].mask_points == ("1", "4")
    assert groups[1].mask_points == ("6",)  # no BN: masked after the conv
    masks = attach_masks(net, groups)
    try:
        p0, p1 = torch.rand(4, dtype=torch.float64), torch.rand(5, dtype=torch.float64)
        e0, e1 = float(p0.sum()), float(p1.sum())
        pos = 8 * 8
        expected = pos * 9 * 3 * e0 + pos * 9 * e0 + pos * 1 * e0 * e1 + pos * 9 * e1 * 1
        assert float(masks.expected_macs([p0, p1]).detach()) == pytest.approx(expected, rel=1e-9)
        params = 27 * e0 + 2 * e0 + 9 * e0 + 2 * e0 + (e0 * e1 + e1) + (9 * e1 + 1)
        assert float(masks.expected_params([p0, p1]).detach()) == pytest.approx(params, rel=1e-9)
    finally:
        masks.detach()


def test_keep_indices_never_empty_and_freeze(tiny) -> None:
    model, groups = tiny
    masks = attach_masks(model, groups)
    try:
        with torch.no_grad():
            for lg in masks.logits:
                lg.fill_(-5.0)
                lg[1] = -4.0  # the largest logit survives
        assert all(v == [1] for v in masks.keep_indices().values())
        masks.freeze()
        assert masks.frozen and not any(lg.requires_grad for lg in masks.logits)
        model.train()
        y = model(torch.rand(1, 3, *SIZE))
        assert torch.isfinite(y).all() and not masks.mask(0).requires_grad
        with pytest.raises(ConfigError, match="already has masks"):
            attach_masks(model, groups)
    finally:
        masks.detach()
        model.eval()
    pruned = masks.apply(model)
    assert all(pruned.get_submodule(g.root).out_channels == 1 for g in groups)
    assert pruned(torch.rand(1, 3, *SIZE)).shape == (1, 1, *SIZE)


def test_meet_target_fits_the_budget_with_one_global_threshold(tiny) -> None:
    model, groups = tiny
    masks = attach_masks(model, groups)
    try:
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for lg in masks.logits:
                lg.copy_(torch.rand(lg.shape, generator=g) * 4 + 0.5)  # all on, confidences differ
        before = [lg.detach().clone() for lg in masks.logits]
        assert masks.meet_target(1.0) == 0.0  # already fits: nothing changes
        assert all(torch.equal(a, b) for a, b in zip(before, masks.logits))
        shift = masks.meet_target(0.5)
        assert shift > 0
        budget = 0.5 * masks.original_macs
        assert masks.hard_macs() <= budget
        # the least confident channels went first: every kept logit beats every removed one
        hard = [m.bool() for m in masks.hard_masks()]
        dropped = torch.cat([b[~m] for b, m in zip(before, hard)])
        for b, m in zip(before, hard):
            others = m.clone()
            others[b.argmax()] = False  # a group's best channel stays regardless
            assert bool((b[others] > dropped.max()).all())
        # minimal: a slightly lower threshold would not fit
        with torch.no_grad():
            for lg in masks.logits:
                lg.add_(1e-3)
        assert masks.hard_macs() > budget
        with torch.no_grad():
            for lg in masks.logits:
                lg.sub_(1e-3)
        model.eval()
        pruned = masks.apply(model)
        assert count_macs(pruned, SIZE).total == masks.cost.hard_macs(masks.keep_indices()) <= budget
        with pytest.raises(ConfigError, match="cannot be met"):
            attach_masks(model, groups).meet_target(1e-6)
    finally:
        masks.detach()
        from slimdepth.compress.masks import _ATTACHED

        if model in _ATTACHED:
            _ATTACHED[model].detach()


def test_masks_that_do_not_learn_get_no_gradient(tiny) -> None:
    model, groups = tiny
    masks = attach_masks(model, groups)
    try:
        model.train()
        masks.learning = False  # a warm-up: masks act but are not trained
        model(torch.rand(2, 3, *SIZE)).mean().backward()
        assert all(lg.grad is None for lg in masks.logits)
        masks.learning = True
        model(torch.rand(2, 3, *SIZE)).mean().backward()
        assert any(lg.grad is not None and bool(lg.grad.abs().sum() > 0) for lg in masks.logits)
    finally:
        masks.detach()
        model.zero_grad(set_to_none=True)
        model.eval()


def test_widths_survive_normalisation_folding(tiny) -> None:
    model, groups = tiny
    masks = attach_masks(model, groups)
    switch_off_some(masks, seed=5)
    pruned = masks.apply()
    folded = fold_normalization(pruned)
    assert record_widths(folded) == record_widths(pruned)
    # rebuild as a checkpoint does: default model, widths, then folding
    rebuilt = fold_normalization(apply_widths(build_model("tiny-multires"), record_widths(folded)))
    rebuilt.load_state_dict(folded.state_dict(), strict=True)
    x = torch.rand(1, 3, *SIZE)
    torch.testing.assert_close(rebuilt.eval()(x), folded.eval()(x), atol=0, rtol=0)


def test_apply_widths_rejects_bad_records() -> None:
    model = build_model("tiny-multires")
    with pytest.raises(ConfigError, match="no layer"):
        apply_widths(model, {"stem.7": {"type": "Conv2d", "out_channels": 3}})
    with pytest.raises(ConfigError, match="Linear width"):
        apply_widths(model, {"stem.0": {"type": "Linear", "out_features": 3}})
    with pytest.raises(ConfigError, match="positive"):
        apply_widths(model, {"stem.1": {"type": "BatchNorm2d", "num_features": 0}})
    assert record_widths(model) == {}


def test_binary_compression_loss_prices_hard_masks_with_straight_through_gradient(tiny) -> None:
    """Logits just above 0 (p ~ 0.55) keep whole channels: the expected cost can sit under the
    budget while the network that would be pruned does not; the binary estimate sees that."""
    model, groups = tiny
    masks = attach_masks(model, groups)
    try:
        with torch.no_grad():
            for lg in masks.logits:
                lg.fill_(0.2)
        ratio_expected = float(masks.expected_macs().detach()) / masks.original_macs
        hard_ratio = masks.hard_macs() / masks.original_macs
        assert hard_ratio == pytest.approx(1.0) and ratio_expected < 0.5
        target = 0.5
        assert float(masks.compression_loss(target, estimate="expected").detach()) == 0.0
        binary = masks.compression_loss(target)
        assert float(binary.detach()) == pytest.approx((hard_ratio / target - 1) ** 2, rel=1e-5)
        binary.backward()
        # gradient: 2 * excess / budget * d cost / d p (at the binary point) * sigmoid'(0.2)
        keep = torch.cat([m.to(torch.float64) for m in masks.hard_masks()]).requires_grad_(True)
        masks.cost.macs(keep).backward()
        dcost = keep.grad
        budget = target * masks.original_macs
        sig = torch.sigmoid(torch.tensor(0.2, dtype=torch.float64))
        factor = 2 * (hard_ratio / target - 1) / budget * sig * (1 - sig)
        grads = torch.cat([lg.grad.to(torch.float64) for lg in masks.logits])
        assert torch.allclose(grads, dcost * factor, rtol=1e-4)
        assert bool((grads > 0).all())
    finally:
        masks.detach()


def test_meet_target_restores_the_most_confident_channels_after_an_overshoot(tiny) -> None:
    model, groups = tiny
    masks = attach_masks(model, groups)
    try:
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            for lg in masks.logits:
                lg.copy_(-torch.rand(lg.shape, generator=g) * 4 - 0.5)  # all off but each group's best
        before = [lg.detach().clone() for lg in masks.logits]
        low = masks.hard_macs()
        budget = 0.6 * masks.original_macs
        assert low < budget
        assert masks.meet_target(0.6, fill=False) == 0.0  # fits; without fill nothing changes
        assert all(torch.equal(a, b) for a, b in zip(before, masks.logits))
        shift = masks.meet_target(0.6)
        assert shift < 0 and low < masks.hard_macs() <= budget
        # restored by confidence: every kept logit beats every still-removed one
        hard = [m.bool() for m in masks.hard_masks()]
        dropped = torch.cat([b[~m] for b, m in zip(before, hard)])
        kept = torch.cat([b[m & (b != b.max())] for b, m in zip(before, hard)])
        assert bool((kept > dropped.max()).all())
        # maximal: one more channel (a slightly lower threshold) would exceed the budget
        with torch.no_grad():
            for lg in masks.logits:
                lg.add_(1e-6)
        assert masks.hard_macs() > budget
        # a budget everything fits in restores every channel
        masks.meet_target(1.0)
        assert masks.hard_macs() == masks.original_macs
    finally:
        masks.detach()


def test_init_from_importance_spreads_logits_by_global_l1_rank(tiny) -> None:
    from slimdepth.compress.baselines import filter_importance

    model, groups = tiny
    scores = filter_importance(model, SIZE)
    assert set(scores) == {g.root for g in groups}
    masks = attach_masks(model, groups)
    try:
        masks.init_from_importance(scores, 0.5, 2.5)
        logits = torch.cat([lg.detach().to(torch.float64) for lg in masks.logits])
        flat = torch.cat([scores[g.root] for g in groups])
        assert float(logits.min()) == pytest.approx(0.5) and float(logits.max()) == pytest.approx(2.5)
        assert torch.equal(torch.argsort(logits, stable=True), torch.argsort(flat, stable=True))  # same order
        assert masks.hard_macs() == masks.original_macs  # every mask still on
        # the global threshold then removes what magnitude pruning removes first: meeting a budget
        # from this start keeps, per group, a top-L1 subset
        masks.meet_target(0.6)
        for g, keep in masks.keep_indices().items():
            ranked = torch.argsort(scores[g], descending=True).tolist()
            assert sorted(ranked[:len(keep)]) == keep
        with pytest.raises(ConfigError):
            masks.init_from_importance({}, 0.5, 2.5)
        with pytest.raises(ConfigError):
            masks.init_from_importance(scores, 0.0, 1.0)
    finally:
        masks.detach()


def _small_masked_net() -> tuple[nn.Module, list[ChannelGroup]]:
    """Conv-BN-act, depthwise conv-BN-act, 1x1 conv-act, conv: groups '0' (4 channels, masked
    after both BNs) and '6' (5 channels, no BN: masked after the conv). Hardswish, whose slope at
    0 is 1/2, so that switched-off channels pass a gradient too (ReLU's is 0); BN statistics and
    affine parameters away from their defaults, so that a BN of a zero input is not zero."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.Hardswish(),
        nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(4), nn.Hardswish(),
        nn.Conv2d(4, 5, 1), nn.Hardswish(),
        nn.Conv2d(5, 1, 3, padding=1),
    ).eval()
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return net, channel_groups(net, (8, 8))


def test_straight_through_gradient_is_the_sigmoid_derivative_exactly() -> None:
    """Catches a straight-through estimator that loses its sigmoid(l) (1 - sigmoid(l)) factor
    (identity backward), uses sigmoid(l) alone, or the derivative at another point: for known
    logits and a known upstream gradient, d loss / d logit = upstream * s (1 - s), s = sigmoid(l)."""
    net, groups = _small_masked_net()
    masks = attach_masks(net, groups)
    try:
        logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
        with torch.no_grad():
            masks.logits[0].copy_(logits)
        m = masks.mask(0)
        assert m.tolist() == [1.0, 0.0, 1.0, 0.0]
        upstream = torch.tensor([1.0, 2.0, -3.0, 4.0])
        (m * upstream).sum().backward()
        s = 1.0 / (1.0 + torch.exp(-logits.double()))
        expected = upstream.double() * s * (1.0 - s)
        torch.testing.assert_close(masks.logits[0].grad.double(), expected, rtol=1e-6, atol=0)
        assert masks.logits[0].grad[2].item() == pytest.approx(-3 * 0.6224593 * 0.3775407, abs=1e-6)  # logit 0.5
    finally:
        masks.detach()


def test_straight_through_gradient_through_the_forward_hooks() -> None:
    """The same exact gradient through a real forward pass: the masks' gradient equals
    d loss / d m (the hard mask as a plain differentiable tensor, multiplied in by hand at the
    same points, both BNs of group '0' sharing one mask) times sigmoid'(logit)."""
    net, groups = _small_masked_net()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    logits = [torch.tensor([1.5, -0.5, 0.25, -2.0]), torch.tensor([0.3, 2.0, -1.0, -0.2, 4.0])]
    hard = [(lg > 0).float() for lg in logits]

    # reference: no MaskSet, the hard masks as leaf tensors multiplied in by hooks of our own
    leaves = [h.clone().requires_grad_(True) for h in hard]
    points = {"1": 0, "4": 0, "6": 1}
    handles = [net.get_submodule(name).register_forward_hook(
        lambda mod, inp, out, gi=gi: out * leaves[gi].view(1, -1, 1, 1)) for name, gi in points.items()]
    try:
        net(x).sum().backward()
    finally:
        for h in handles:
            h.remove()
    expected = []
    for lg, leaf in zip(logits, leaves):
        s = torch.sigmoid(lg.double())
        expected.append(leaf.grad.double() * s * (1.0 - s))
    net.zero_grad(set_to_none=True)

    masks = attach_masks(net, groups)
    try:
        assert [g.mask_points for g in groups] == [("1", "4"), ("6",)]
        with torch.no_grad():
            for p, lg in zip(masks.logits, logits):
                p.copy_(lg)
        net(x).sum().backward()
        for p, exp in zip(masks.logits, expected):
            assert bool((exp != 0).all())  # every channel, on or off, gets a gradient
            torch.testing.assert_close(p.grad.double(), exp, rtol=1e-5, atol=0)
    finally:
        masks.detach()
