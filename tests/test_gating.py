"""Dynamic channel gating (method 2, feature boosting and suppression): sparse path vs the
masked dense reference, k-WTA, executed MACs, training signals, conversion round trips and
checkpoints."""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch
from torch import nn

import slimdepth
from slimdepth.compress.gating import (
    GatedBasicBlock,
    GatedBatchNorm2d,
    GatedBottleneck,
    GatedConv2d,
    GatingReport,
    add_gating,
    apply_gating_config,
    executed_macs,
    gated_layers,
    gating_config,
    gating_l1,
    gating_mode,
    gating_report,
    is_gated,
    keep_count,
    latency_comparison,
    remove_gating,
    set_density,
    wta,
)
from slimdepth.deploy.cost import count_macs
from slimdepth.errors import ConfigError
from slimdepth.loader import build_from_config
from slimdepth.models.backbones.resnet import BasicBlock, Bottleneck
from slimdepth.models.checkpoint import load_state_strict, read_sidecar, save_model
from slimdepth.models.zoo import build_model

SIZE = (64, 96)
TOL = 1e-4
DECODER = ["decoder.stages.0", "decoder.stages.1.0", "decoder.skip_proj.2"]


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial statistics so folding and slicing are really exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


@functools.lru_cache(maxsize=4)
def _built(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name)
    _randomise_bn(model, seed)
    return model.eval()


def _model(name: str = "resnet50-unet", seed: int = 0) -> nn.Module:
    """A fresh copy of a zoo model with random weights and BN statistics (built once per session)."""
    return copy.deepcopy(_built(name, seed))


def _image(batch: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


def _block_inputs(model: nn.Module, x: torch.Tensor, types: tuple[type, ...]) -> dict[str, torch.Tensor]:
    """The input each module of ``types`` receives in a forward pass of ``model``."""
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: inputs.setdefault(name, args[0].clone()))
             for name, m in model.named_modules() if isinstance(m, types)]
    try:
        with torch.no_grad(), gating_mode(model, "masked"):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return inputs


# --------------------------------------------------------------------------------------------
# k-winner-takes-all


def test_keep_count_rounds_and_clamps() -> None:
    assert keep_count(0.5, 64) == 32
    assert keep_count(0.25, 10) == 3  # 2.5 rounds up
    assert keep_count(0.01, 16) == 1
    assert keep_count(1.0, 7) == 7


@pytest.mark.parametrize("k", [1, 5, 16, 32])
def test_wta_keeps_exactly_k_largest(k: int) -> None:
    g = torch.rand(4, 32, generator=torch.Generator().manual_seed(k)) + 0.1
    p = wta(g, k)
    assert ((p != 0).sum(dim=1) == k).all()
    top = g.topk(k, dim=1).indices
    assert torch.equal(p.gather(1, top), g.gather(1, top))  # kept values are boosted by g itself
    assert torch.allclose(p.sum(1), g.topk(k, dim=1).values.sum(1))


def test_gated_layers_report_k() -> None:
    model = add_gating(_model(), 0.5, densities={"encoder.layer4": 0.25, "encoder.layer1.0.conv2": 1.0})
    layers = gated_layers(model)
    assert len(layers) == 2 * 16
    assert layers["encoder.layer1.1.conv1"] == {"channels": 64, "density": 0.5, "k": 32}
    assert layers["encoder.layer1.0.conv2"]["k"] == 64
    assert layers["encoder.layer4.2.conv2"] == {"channels": 512, "density": 0.25, "k": 128}


# --------------------------------------------------------------------------------------------
# sparse path == masked dense reference


@pytest.mark.parametrize("name, cls", [("resnet50-unet", GatedBottleneck), ("resnet18-unet", GatedBasicBlock)])
@pytest.mark.parametrize("density", [0.5, 0.25])
def test_sparse_matches_masked_on_every_block(name: str, cls: type, density: float) -> None:
    model = add_gating(_model(name), density)
    inputs = _block_inputs(model, _image(), (cls,))
    assert len(inputs) == (16 if cls is GatedBottleneck else 8)
    with torch.no_grad():
        for block_name, x in inputs.items():
            block = model.get_submodule(block_name)
            with gating_mode(model, "masked"):
                ref = block(x)
            assert block.last_path == "masked"
            out = block(x)
            assert block.last_path == "sparse"
            assert out.shape == ref.shape
            assert (out - ref).abs().max().item() < TOL, block_name
            # the sparse path really computed fewer channels: conv1 ran k1 of its C1 outputs
            oh, ow = block.conv1(x).shape[-2:]
            kh, kw = block.conv1.kernel_size
            assert block.last_macs["conv1"] == block.gate1.k * block.conv1.in_channels * kh * kw * oh * ow


@pytest.mark.parametrize("name", ["resnet50-unet", "resnet18-unet"])
@pytest.mark.parametrize("density", [1.0, 0.5, 0.25])
def test_sparse_matches_masked_end_to_end(name: str, density: float) -> None:
    model = add_gating(_model(name), density, layers=["bottlenecks", *DECODER])
    x = _image()
    with torch.no_grad():
        with gating_mode(model, "masked"):
            ref = model(x, outputs=("depth", "features"))
        out = model(x, outputs=("depth", "features"))
    assert (out["depth"] - ref["depth"]).abs().max().item() < TOL
    for key in ref["features"]:
        assert (out["features"][key] - ref["features"][key]).abs().max().item() < TOL
    assert all(m.last_path == "sparse" for m in model.modules() if hasattr(m, "last_path"))


def test_the_convs_after_a_gated_conv_read_only_its_kept_channels() -> None:
    """Decoder stage 0 is gated; stage 1 reads it (resized, concatenated after nothing) and
    stage 2 reads stage 1 resized and concatenated with a skip: each computes with the kept
    input channels only, and the network still equals the masked dense reference."""
    from slimdepth.compress.gating import SlicedInputConv2d

    model = add_gating(_model("resnet18-unet"), 0.5, layers=["decoder.stages.0", "decoder.stages.1"])
    s0, s1, s2 = (model.decoder.stages[i][0] for i in range(3))
    assert isinstance(s2, SlicedInputConv2d) and type(model.decoder.stages[3][0]) is nn.Conv2d
    x = _image()
    with torch.no_grad():
        with gating_mode(model, "masked"):
            ref = model(x)
        inputs = _block_inputs(model, x, (nn.Conv2d,))
        out = model(x)
    assert (out - ref).abs().max().item() < TOL
    for producer, reader in ((s0, s1), (s1, s2)):
        kept = producer.last_rows.numel()
        assert kept == producer.gate.k < producer.out_channels
        skip = reader.in_channels - producer.out_channels  # concatenated skip channels, read in full
        name = next(n for n, m in model.named_modules() if m is reader)
        oh, ow = inputs[name].shape[-2:]  # 3x3, padding 1: same size
        computed = reader.gate.k if hasattr(reader, "gate") else reader.out_channels  # stage 1 is gated too
        assert reader.last_macs["conv"] == (kept + skip) * computed * 9 * oh * ow
        # the producer's suppressed channels really are zeros at the reader's input
        feed = inputs[name][0, :producer.out_channels]
        dropped = torch.ones(producer.out_channels, dtype=torch.bool)
        dropped[producer.last_rows] = False
        assert feed[dropped].abs().max() == 0 and feed[~dropped].abs().max() > 0
    report = executed_macs(model, SIZE)
    assert report["self_counted_macs"] == report["executed_macs"]
    assert report["by_layer"]["decoder.stages.2.0"]["executed_macs"] < report["by_layer"]["decoder.stages.2.0"]["dense_macs"]
    assert type(remove_gating(model).decoder.stages[2][0]) is nn.Conv2d


def test_a_gated_model_deep_copies_after_training_steps() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5, layers=["bottlenecks", "decoder.stages.0"]).train()
    model(_image(2)).mean().backward()  # the gates now hold saliencies with their autograd graph
    copied = copy.deepcopy(model).eval()
    x = _image()
    with torch.no_grad():
        assert torch.equal(copied(x), model.eval()(x))


def test_sparse_matches_masked_under_inference_mode_and_autograd() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5)
    x = _image()
    with torch.no_grad(), gating_mode(model, "masked"):
        ref = model(x)
    with torch.inference_mode():
        fast = model(x)
    grad_path = model(x)  # eval, batch 1, autograd on: sparse path, differentiable
    assert (fast - ref).abs().max().item() < TOL
    assert (grad_path - ref).abs().max().item() < TOL
    grad_path.mean().backward()
    assert model.encoder.layer1[0].conv1.weight.grad is not None


def test_fold_cache_follows_weight_changes() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5)
    x = _image()
    with torch.no_grad():
        model(x)  # fills the folded-weight cache
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.mul_(2.0)
        model.encoder.layer2[0].conv1.weight.mul_(0.5)
        out = model(x)
        with gating_mode(model, "masked"):
            ref = model(x)
    assert (out - ref).abs().max().item() < TOL


def test_density_one_sparse_equals_masked_and_ones_init_equals_ungated() -> None:
    plain = _model()
    x = _image()
    with torch.no_grad():
        ungated = plain(x)
    model = add_gating(plain, 1.0, predictor_init="ones")  # g == 1: no boosting, nothing suppressed
    with torch.no_grad():
        with gating_mode(model, "masked"):
            masked = model(x)
        sparse = model(x)
    assert torch.equal(masked, ungated)
    assert (sparse - ungated).abs().max().item() < TOL
    # with a trained (here: random) predictor the kept channels are scaled by g, so density 1
    # is no longer the ungated network -- but both paths still agree
    for gate in (m for m in model.modules() if hasattr(m, "last_saliency")):
        gate.reset_predictor("noisy")
    with torch.no_grad():
        with gating_mode(model, "masked"):
            masked = model(x)
        sparse = model(x)
    assert (sparse - masked).abs().max().item() < TOL
    assert not torch.equal(masked, ungated)


def test_batch_eval_falls_back_to_masked_dense() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5, layers=["bottlenecks", "decoder.stages.0"])
    x = _image(batch=3)
    with torch.no_grad():
        batched = model(x)
        assert model.encoder.layer1[0].last_path == "masked"
        assert model.decoder.stages[0][0].last_path == "masked"
        singles = torch.cat([model(x[i:i + 1]) for i in range(3)])
        assert model.encoder.layer1[0].last_path == "sparse"
        with gating_mode(model, "sparse"):  # the sparse path, one sample at a time
            looped = model(x)
        assert model.encoder.layer1[0].last_path == "sparse"
    assert (batched - singles).abs().max().item() < TOL
    assert (looped - singles).abs().max().item() < TOL


# --------------------------------------------------------------------------------------------
# executed MACs


def test_executed_macs_hand_computed_on_one_block() -> None:
    model = add_gating(_model(), 0.5)
    counted = count_macs(model, SIZE)
    block = "encoder.layer1.1"  # 256 -> 64 -> 64 -> 256 at stride 4: 16 x 24
    hw = (SIZE[0] // 4) * (SIZE[1] // 4)
    k1 = k2 = 32
    conv1 = k1 * 256 * hw
    conv2 = k2 * k1 * 9 * hw
    conv3 = 256 * k2 * hw
    gates = 256 * 64 + k1 * 64  # gate2 reads only the k1 surviving channels
    expected = conv1 + conv2 + conv3 + gates
    by_block = sum(v for k, v in counted.by_submodule.items() if k == block or k.startswith(block + "."))
    assert by_block == expected
    report = executed_macs(model, SIZE)
    assert report["by_layer"][block]["executed_macs"] == expected
    assert report["by_layer"][block]["dense_macs"] == (64 * 256 + 64 * 64 * 9 + 256 * 64) * hw
    assert report["executed_macs"] == counted.total
    assert report["self_counted_macs"] == report["executed_macs"]
    assert report["executed_macs"] < 0.7 * report["dense_macs"]


def test_executed_macs_at_density_one_is_dense_plus_predictors() -> None:
    plain = _model()
    dense = count_macs(plain, SIZE).total
    model = add_gating(plain, 1.0, layers=["bottlenecks", *DECODER])
    report = executed_macs(model, SIZE)
    assert report["dense_macs"] == dense
    predictors = sum(p.numel() for n, p in model.named_parameters() if ".gate" in n and n.endswith("weight"))
    assert report["predictor_macs"] == predictors
    assert report["executed_macs"] == dense + predictors
    assert report["self_counted_macs"] == report["executed_macs"]


def test_report_and_latency_comparison_run() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5)
    report = gating_report(model, (32, 48), runs=2, warmup=1)
    assert isinstance(report, GatingReport)
    assert report.executed_macs < report.dense_macs and 0 < report.mac_ratio < 1
    lat = report.as_dict()["latency"]
    assert lat["dense"]["runs"] == 2 and lat["gated"]["runs"] == 2
    assert lat["ratio"] == pytest.approx(lat["gated"]["median_ms"] / lat["dense"]["median_ms"])
    assert model.training is False and all(m.execution_mode == "auto" for m in model.modules() if hasattr(m, "execution_mode"))
    direct = latency_comparison(model, (32, 48), runs=2, warmup=0, rounds=2)
    assert set(direct) >= {"dense", "gated", "ratio", "reduction", "p90_ratio"}


# --------------------------------------------------------------------------------------------
# training signals


def test_gradients_reach_the_predictors_in_training() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5, layers=["bottlenecks", "decoder.stages.0"]).train()
    x = _image(batch=2)
    depth = model(x)
    penalty = gating_l1(model)
    assert torch.isfinite(penalty) and penalty.requires_grad
    (depth.mean() + 0.1 * penalty).backward()
    for name, p in model.named_parameters():
        if ".gate" in name:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.encoder.layer1[0].gate1.weight.grad.abs().sum() > 0
    assert model.decoder.stages[0][0].gate.weight.grad.abs().sum() > 0
    assert model.encoder.layer1[0].last_path == "masked"


def test_l1_penalty_is_mean_of_mean_saliencies() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5).train()
    with pytest.raises(ConfigError, match="forward"):
        gating_l1(model)
    model(_image(batch=2))
    gates = [m.gate1 for m in model.modules() if isinstance(m, GatedBasicBlock)]
    expected = torch.stack([g.last_saliency.abs().mean() for g in gates]).mean()
    penalty = gating_l1(model)
    assert torch.allclose(penalty, expected)
    grads = torch.autograd.grad(penalty, [g.weight for g in gates])
    assert all(torch.isfinite(gr).all() for gr in grads)


def test_gated_conv_bn_trains_like_plain_bn() -> None:
    plain = _model("resnet18-unet").train()
    model = add_gating(_model("resnet18-unet"), 1.0, layers=["decoder.stages.0"], predictor_init="ones").train()
    x = _image(batch=2)
    assert torch.equal(plain(x), model(x))
    assert torch.equal(plain.decoder.stages[0][1].running_mean, model.decoder.stages[0][1].running_mean)


# --------------------------------------------------------------------------------------------
# conversion, weights and checkpoints


def test_add_remove_round_trip_keeps_weights() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    add_gating(model, 0.5, layers=["bottlenecks", *DECODER])
    assert isinstance(model.encoder.layer1[0], GatedBottleneck)
    assert isinstance(model.decoder.stages[0][0], GatedConv2d)
    assert isinstance(model.decoder.stages[0][1], GatedBatchNorm2d)
    gated = model.state_dict()
    new = {k for k in gated if k not in before}
    assert new and all(".gate" in k for k in new)
    assert all(torch.equal(gated[k], v) for k, v in before.items())
    assert gating_config(model)["layers"] == ["bottlenecks", *DECODER]
    remove_gating(model)
    assert type(model.encoder.layer1[0]) is Bottleneck
    assert type(model.decoder.stages[0][0]) is nn.Conv2d and type(model.decoder.stages[0][1]) is nn.BatchNorm2d
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert "gating" not in model.config
    x = _image()
    with torch.no_grad():
        assert torch.equal(model(x), _model()(x))


def test_ungated_weights_load_into_gated_model() -> None:
    source = _model("resnet18-unet", seed=3)
    model = add_gating(_model("resnet18-unet", seed=4), 0.5, layers=["bottlenecks", "decoder.stages.1"])
    result = model.load_state_dict(source.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(".gate" in k for k in result.missing_keys)
    x = _image()
    with torch.no_grad(), gating_mode(model, "off"):
        assert torch.equal(model(x), source(x))
    assert type(remove_gating(model).encoder.layer1[0]) is BasicBlock


def test_checkpoint_round_trip_with_apply_gating_config(tmp_path) -> None:
    model = add_gating(_model(), 0.5, layers=["bottlenecks", "decoder.stages.0"], densities={"encoder.layer4": 0.25})
    path = save_model(model, tmp_path / "gated")
    info = read_sidecar(path)
    assert info["model"]["gating"] == {"density": 0.5, "layers": ["bottlenecks", "decoder.stages.0"],
                                       "densities": {"encoder.layer4": 0.25}}
    # build_from_config re-applies the recorded gating; the weights then load strictly
    rebuilt = build_from_config(info["model"])
    from safetensors.torch import load_file

    load_state_strict(rebuilt, load_file(str(path)), str(path))
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(slimdepth.load(path)(_image()), model.eval()(_image()))
    assert gated_layers(rebuilt) == gated_layers(model)
    x = _image()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    plain = _model()
    assert apply_gating_config(plain, {"name": "resnet50-unet"}) is plain and not is_gated(plain)  # no entry: no-op


def test_set_density_updates_k_and_config() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5)
    set_density(model, 0.25, {"encoder.layer4.1.conv1": 1.0})
    layers = gated_layers(model)
    assert layers["encoder.layer1.0.conv1"]["k"] == 16
    assert layers["encoder.layer4.1.conv1"]["k"] == 512
    assert gating_config(model) == {"density": 0.25, "layers": "bottlenecks", "densities": {"encoder.layer4.1.conv1": 1.0}}
    with torch.no_grad():
        model(_image())
    assert model.encoder.layer2[1].last_macs["conv1"] == 32 * 128 * (SIZE[0] // 8) * (SIZE[1] // 8) * 9


@pytest.mark.parametrize("kwargs, match", [
    ({"density": 0.0}, "density"),
    ({"density": 1.5}, "density"),
    ({"layers": ["decoder.nope"]}, "no such module"),
    ({"layers": ["decoder.head.conv"]}, "BatchNorm2d"),
    ({"layers": ["decoder"]}, "not a Conv2d"),
    ({"layers": ["bottlenecks", "encoder.layer1.0.conv1"]}, "inside a gated block"),
    ({"densities": {"encoder.layer9": 0.5}}, "name no gated conv"),
    ({"predictor_init": "zeros"}, "predictor_init"),
])
def test_bad_options_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        add_gating(_model("resnet18-unet"), **kwargs)


def test_gating_twice_is_refused_and_bn_misuse_detected() -> None:
    model = add_gating(_model("resnet18-unet"), 0.5, layers=["decoder.stages.0"])
    with pytest.raises(ConfigError, match="already gated"):
        add_gating(model)
    conv, bn = model.decoder.stages[0][0], model.decoder.stages[0][1]
    y = torch.rand(1, conv.in_channels, 4, 6)
    with torch.no_grad():
        conv(y)
        with pytest.raises(ConfigError, match="straight into its BatchNorm"):
            bn(torch.rand(1, conv.out_channels, 4, 6))


def test_cost_of_a_gated_checkpoint_times_it_against_its_dense_self(tmp_path, monkeypatch, capsys) -> None:
    from tests.helpers import run_cli

    path = save_model(add_gating(_model("resnet18-unet"), 0.5), tmp_path / "gated", metadata={"input_size": [32, 48]})
    report = tmp_path / "cost.json"
    code, out, err = run_cli(monkeypatch, capsys, "cost", str(path), "--runs", "2", "--warmup", "0", "--json", str(report))
    assert code == 0, err
    assert "dynamic gating:" in out and "dense with the same weights" in out
    both = json.loads(report.read_text())["gating_latency"]
    assert both["dense"]["runs"] == both["gated"]["runs"] == 2 and both["size"] == [32, 48]
