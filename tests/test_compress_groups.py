"""Channel groups from torch-pruning's dependency graph, and physical channel removal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimdepth.compress.graph import channel_groups, prune_channels
from slimdepth.compress.groups import ChannelGroup
from slimdepth.compress.layers import trace_layers
from slimdepth.errors import ConfigError
from slimdepth.models.widths import WIDTHS_KEY
from slimdepth.models.zoo import build_model

MODELS = ("resnet50-unet", "resnet18-unet", "litedepth", "tiny-multires", "fastdepth")
SIZE = (64, 96)


@pytest.fixture(scope="module", params=MODELS)
def analysed(request: pytest.FixtureRequest) -> tuple[str, nn.Module, list[ChannelGroup]]:
    torch.manual_seed(0)
    model = build_model(request.param).eval()
    return request.param, model, channel_groups(model, SIZE)


@pytest.fixture(scope="module")
def resnet18() -> tuple[nn.Module, dict[str, ChannelGroup]]:
    torch.manual_seed(0)
    model = build_model("resnet18-unet").eval()
    return model, {g.root: g for g in channel_groups(model, SIZE)}


@pytest.fixture(scope="module")
def litedepth() -> tuple[nn.Module, dict[str, ChannelGroup]]:
    torch.manual_seed(0)
    model = build_model("litedepth").eval()
    return model, {g.root: g for g in channel_groups(model, SIZE)}


def _out_width(module: nn.Module) -> int:
    return module.num_features if isinstance(module, nn.BatchNorm2d) else module.out_channels


def test_groups_are_consistent_with_the_model(analysed) -> None:
    name, model, groups = analysed
    assert groups, f"{name}: no prunable groups"
    layers = trace_layers(model, SIZE)
    produced: set[str] = set()
    for g in groups:
        root = model.get_submodule(g.root)
        assert isinstance(root, nn.Conv2d) and root.out_channels == g.channels >= 2
        assert g.root in g.producers and g.input_size == SIZE
        for p in g.producers:
            assert p not in produced, f"{p} produces for two groups"
            produced.add(p)
            assert _out_width(model.get_submodule(p)) == g.channels
        assert g.mask_points and set(g.mask_points) <= set(g.producers)
        assert set(g.depthwise) <= set(g.producers)
        for c in g.consumers:
            layer = model.get_submodule(c.layer)
            assert len(c.indices) == len(c.root_indices) == g.channels
            assert sorted(c.root_indices) == list(range(g.channels))
            assert 0 <= min(c.indices) and max(c.indices) < layer.in_channels
        convs = [n for n in g.layers if isinstance(model.get_submodule(n), nn.Conv2d)]
        for n in convs:
            assert g.out_sizes[n] == layers[n].out_size and len(g.out_sizes[n]) == 2 and min(g.out_sizes[n]) >= 1


def test_outputs_and_the_image_are_never_pruned(analysed) -> None:
    name, model, groups = analysed
    producers = {p for g in groups for p in g.producers}
    consumers = {c.layer for g in groups for c in g.consumers}
    for layer_name, layer in model.named_modules():
        if isinstance(layer, nn.Conv2d) and layer.out_channels == 1:  # depth outputs
            assert layer_name not in producers
        if layer_name.startswith("seg_heads."):  # segmentation logits keep the class count
            assert layer_name not in producers and layer_name in consumers
    assert model.first_conv not in consumers  # its input is the RGB image


def test_channel_groups_restores_training_flags() -> None:
    model = build_model("tiny-multires").train()
    model.stages[0].eval()
    channel_groups(model, (32, 48))
    assert model.training and not model.stages[0].training and model.up.training


def test_residual_add_is_one_group(resnet18) -> None:
    model, groups = resnet18
    g = groups["encoder.layer2.0.conv2"]
    for layer in ("encoder.layer2.0.downsample.0", "encoder.layer2.1.conv2", "encoder.layer2.0.bn2"):
        assert layer in g.producers
    # masks go after the BNs, never between a conv and its BN
    assert set(g.mask_points) == {"encoder.layer2.0.bn2", "encoder.layer2.0.downsample.1", "encoder.layer2.1.bn2"}
    assert {c.layer for c in g.consumers} >= {"encoder.layer2.1.conv1", "encoder.layer3.0.conv1", "decoder.skip_proj.1.0"}
    assert g.out_sizes["encoder.layer2.0.conv2"] == (8, 12)


def test_concatenated_skips_use_index_offsets(resnet18) -> None:
    model, groups = resnet18
    stage = "decoder.stages.0.0"
    slices = {g.root: c for g in groups.values() for c in g.consumers if c.layer == stage}
    assert slices["decoder.reduce.0"].indices == tuple(range(128))
    assert slices["decoder.skip_proj.0.0"].indices == tuple(range(128, 192))
    assert model.get_submodule(stage).in_channels == 192
    # resizes of decoder channels cost MACs per channel kept
    assert groups["decoder.reduce.0"].interpolations[0].op == "upsample_bilinear2d"


def test_depthwise_and_squeeze_excitation(litedepth) -> None:
    model, groups = litedepth
    g = groups["encoder.features.4.block.0.0"]
    assert g.depthwise == ("encoder.features.4.block.1.0",)
    assert "encoder.features.4.block.2.fc2" in g.producers  # SE scale is multiplied channel-wise
    assert "encoder.features.4.block.2.fc2" in g.mask_points  # no BN after it
    assert {c.layer for c in g.consumers} == {"encoder.features.4.block.2.fc1", "encoder.features.4.block.3.0"}
    squeeze = groups["encoder.features.4.block.2.fc1"]
    assert [c.layer for c in squeeze.consumers] == ["encoder.features.4.block.2.fc2"]
    fuse = [c for c in groups["encoder.features.11.block.3.0"].consumers if c.layer == "fuse16.0"][0]
    assert fuse.indices == tuple(range(64, 64 + 112))  # after the 64 up-sampled decoder channels


def test_ignore_leaves_named_layers_alone(resnet18) -> None:
    model, groups = resnet18
    kept = channel_groups(model, SIZE, ignore=["decoder"])
    assert kept and all(not n.startswith("decoder.") for g in kept for n in g.layers)
    by_module = channel_groups(model, SIZE, ignore=[model.encoder.layer4])
    assert not any(n.startswith("encoder.layer4.") for g in by_module for n in g.layers)
    assert len(by_module) < len(groups)
    with pytest.raises(ConfigError, match="no module named"):
        channel_groups(model, SIZE, ignore=["decoder.nope"])


def test_prune_channels_resolves_couplings_and_refreshes_widths() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18-unet").eval()
    pruned = prune_channels(build_model("resnet18-unet").eval(), {
        "encoder.layer4.0.conv2": [0, 5, 7],      # residual group: both blocks, downsample, decoder reduce
        "decoder.skip_proj.0.0": list(range(10)),  # concatenated skip
    }, SIZE)
    assert pruned.encoder.layer4[1].conv2.out_channels == 509
    assert pruned.encoder.layer4[0].downsample[0].out_channels == 509
    assert pruned.decoder.reduce[0].in_channels == 509
    assert pruned.decoder.stages[0][0].in_channels == 128 + 54
    assert pruned.encoder.channels[-1] == 509  # cached widths follow
    assert pruned.config[WIDTHS_KEY]["encoder.layer4.1.bn2"] == {"type": "BatchNorm2d", "num_features": 509}
    assert pruned(torch.rand(1, 3, *SIZE)).shape == (1, 1, *SIZE)
    assert WIDTHS_KEY not in model.config


def test_prune_channels_rejects_bad_requests() -> None:
    model = build_model("tiny-multires").eval()
    with pytest.raises(ConfigError, match="all 16 channels"):
        prune_channels(model, {"stem.0": list(range(16))}, (32, 48))
    with pytest.raises(ConfigError, match="no layer"):
        prune_channels(model, {"stem.9": [0]}, (32, 48))
    with pytest.raises(ConfigError, match="model outputs"):
        prune_channels(model, {"seg_heads.0": [0]}, (32, 48))
    with pytest.raises(ConfigError, match="same group"):
        prune_channels(model, {"up.3.0.0": [0], "up.3.1.0.0": [1]}, (32, 48))
    assert model.up[3][0][0].out_channels == 16  # nothing pruned when a request is refused
