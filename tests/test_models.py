"""The model zoo, normalisation folding and checkpoints."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

import slimdepth
from slimdepth.errors import ConfigError, DataError
from slimdepth.loader import load_model
from slimdepth.models.backbones import build_classifier
from slimdepth.models.checkpoint import save_model
from slimdepth.models.normalize import FoldedConv2d, fold_normalization
from slimdepth.models.zoo import build_model, list_models

ZOO = ["resnet18-unet", "resnet50-unet", "litedepth", "litedepth-released", "tiny-multires", "fastdepth"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: build_model(name).eval() for name in ZOO}


def test_run_directories_load_their_best_checkpoint(models, tmp_path):
    save_model(models["tiny-multires"], tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert slimdepth.load(tmp_path / "run").config["name"] == "tiny-multires"
    with pytest.raises(DataError, match="no checkpoints/best.safetensors"):
        slimdepth.load(tmp_path)


def test_zoo_lists_the_five_methods():
    assert set(list_models()) == set(ZOO)
    with pytest.raises(ConfigError, match="unknown model 'unet'"):
        build_model("unet")
    with pytest.raises(ConfigError, match="no option 'depth'"):
        build_model("litedepth", depth=3)
    with pytest.raises(ConfigError, match="heads must be 1..4"):
        build_model("tiny-multires", heads=5)
    with pytest.raises(ConfigError, match="bad option value among width='abc'"):
        build_model("litedepth", width="abc")
    with pytest.raises(ConfigError, match="max_depth must be positive"):
        build_model("fastdepth", max_depth=-5)


@pytest.mark.parametrize("name", ZOO)
def test_models_return_metric_depth_at_the_input_size(models, name):
    model = models[name]
    x = torch.rand(2, 3, 60, 92)  # deliberately not a multiple of 32
    with torch.no_grad():
        depth = model(x)
        out = model(x, outputs=("depth", "scales", "seg", "features"))
    assert depth.shape == (2, 1, 60, 92) and torch.isfinite(depth).all() and (depth >= 0).all()
    assert torch.equal(out["depth"], depth)
    assert len(out["features"]) >= 3 and all(f.shape[0] == 2 for f in out["features"].values())
    if name != "litedepth":  # sigmoid heads are bounded by max_depth; LiteDepth's ReLU is not
        assert depth.max() <= model.max_depth
    with pytest.raises(ConfigError, match="unknown model output"):
        model(x, outputs=("normals",))
    with pytest.raises(ConfigError, match="RGB batch"):
        model(torch.rand(3, 60, 92))


def test_tiny_multires_heads_are_detachable():
    torch.manual_seed(0)
    full = build_model("tiny-multires", heads=4).eval()
    assert 200_000 < sum(p.numel() for p in full.parameters()) < 350_000  # method 5: ~0.3 M parameters
    x = torch.rand(1, 3, 320, 480)
    with torch.no_grad():
        out = full(x, outputs=("scales", "seg"))
    # heads at strides 16, 8, 4, 2: 30x20 ... 240x160 for a 480x320 image, coarsest first
    assert [tuple(s.shape[-2:]) for s in out["scales"]] == [(20, 30), (40, 60), (80, 120), (160, 240)]
    assert [tuple(s.shape) for s in out["seg"]] == [(1, 8, 20, 30), (1, 8, 40, 60), (1, 8, 80, 120), (1, 8, 160, 240)]
    for heads in (1, 2, 3):
        part = build_model("tiny-multires", heads=heads).eval()
        part.load_state_dict(full.state_dict(), strict=True)  # one set of weights for every truncation
        with torch.no_grad():
            got = part(x, outputs=("scales",))["scales"]
        assert len(got) == heads
        torch.testing.assert_close(got[-1], out["scales"][heads - 1])  # same head, finer stages never run


def test_litedepth_resizes_inside_the_network():
    model = build_model("litedepth").eval()  # 480x640 -> 128x160 internally
    with torch.no_grad():
        out = model(torch.rand(1, 3, 480, 640), outputs=("depth", "scales", "features"))
    assert out["depth"].shape == (1, 1, 480, 640)
    assert out["scales"][0].shape == (1, 1, 32, 40)  # ReLU output at 1/4 of 128x160
    assert set(out["features"]) == {"dec16", "dec8", "dec4"}


@pytest.mark.parametrize("name", ZOO)
def test_folded_normalisation_gives_the_same_outputs_borders_included(models, name):
    model = models[name]
    folded = fold_normalization(model)
    assert isinstance(folded.normalize, torch.nn.Identity)
    assert any(isinstance(m, FoldedConv2d) for m in folded.modules())
    assert not isinstance(model.normalize, torch.nn.Identity)  # the original is untouched
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ref, got = model(x), folded(x)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    assert (got[..., 0, :] - ref[..., 0, :]).abs().max() < 1e-4  # the first row sees the padding
    with pytest.raises(ConfigError, match="foldable"):
        fold_normalization(folded)


def test_folding_is_exact_at_the_border_of_the_first_convolution():
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = torch.rand(1, 3, 9, 11)
    ref = conv((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    got = FoldedConv2d(conv, mean, std)(x)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    plain = torch.nn.functional.conv2d(x, conv.weight / std.view(1, 3, 1, 1), None, 2, 1)
    assert (plain + FoldedConv2d(conv, mean, std).conv.bias.view(1, -1, 1, 1) - ref).abs()[..., 0, :].max() > 1e-3


@pytest.mark.parametrize("name", ["litedepth", "tiny-multires"])
def test_checkpoints_round_trip_without_pickle(models, name, tmp_path):
    model = models[name]
    weights = save_model(model, tmp_path / "m.safetensors", metadata={"input_size": [64, 96], "note": "test"})
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["format"] == "slimdepth-model" and info["model"]["name"] == name
    assert info["metadata"]["input_size"] == [64, 96]
    loaded = slimdepth.load(weights)
    assert not loaded.training
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert load_model(tmp_path / "m").config == model.config  # the stem works too


def test_folded_models_save_and_load(models, tmp_path):
    folded = fold_normalization(models["fastdepth"])
    save_model(folded, tmp_path / "f.safetensors")
    loaded = slimdepth.load(tmp_path / "f.safetensors")
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), folded(x))


def test_broken_checkpoints_name_the_problem(models, tmp_path):
    save_model(models["tiny-multires"], tmp_path / "m.safetensors")
    with pytest.raises(DataError, match="no such checkpoint"):
        slimdepth.load(tmp_path / "other.safetensors")
    (tmp_path / "lonely.safetensors").write_bytes(b"x")
    with pytest.raises(DataError, match="checkpoint description not found"):
        slimdepth.load(tmp_path / "lonely.safetensors")
    (tmp_path / "m.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="unreadable weights"):
        slimdepth.load(tmp_path / "m.safetensors")
    save_model(models["litedepth"], tmp_path / "x.safetensors")
    info = json.loads((tmp_path / "x.json").read_text())
    info["model"]["width"] = 32  # the weights no longer fit the described architecture
    (tmp_path / "x.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="do not fit the architecture: .*wrong shape"):
        slimdepth.load(tmp_path / "x.safetensors")
    for bad in ({"width": "abc"}, {"max_depth": -5}, {"name": "vit"}):
        (tmp_path / "x.json").write_text(json.dumps({**info, "model": {**info["model"], **bad}}))
        with pytest.raises(DataError, match="x.json: the model it describes cannot be built"):
            slimdepth.load(tmp_path / "x.safetensors")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="not a slimdepth model checkpoint"):
        slimdepth.load(tmp_path / "x.safetensors")


def test_encoder_weights_load_from_a_torchvision_style_file(tmp_path):
    torch.manual_seed(1)
    classifier = build_classifier("resnet18")
    torch.save(classifier.state_dict(), tmp_path / "resnet18.pth")
    model = build_model("resnet18-unet", encoder_weights=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(model.encoder.layer4[1].conv2.weight, classifier.layer4[1].conv2.weight)
    state = classifier.state_dict()
    del state["layer2.0.bn1.running_mean"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ConfigError, match="layer2.0.bn1.running_mean"):
        build_model("resnet18-unet", encoder_weights=str(tmp_path / "broken.pth"))


def test_a_save_that_dies_mid_write_leaves_the_previous_checkpoint_intact(models, tmp_path, monkeypatch):
    """Catches the weights being written in place (not to a temporary file renamed on success):
    a writer that has put some bytes down before it fails must not have touched the good file."""
    import slimdepth.models.checkpoint as checkpoint_module

    model = models["tiny-multires"]
    save_model(model, tmp_path / "m.safetensors", metadata={"note": "good"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    written: list[str] = []

    def dying_writer(tensors, filename, metadata=None):
        written.append(str(filename))
        with open(filename, "wb") as fh:
            fh.write(b"partial safetensors header")  # some bytes reach the path it was given
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "save_file", dying_writer)
    with pytest.raises(OSError, match="disk full"):
        save_model(models["litedepth"], tmp_path / "m.safetensors", metadata={"note": "bad"})
    monkeypatch.undo()
    assert len(written) == 1  # the writer did run and did write
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # byte for byte, no temporary file
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config == model.config and loaded.checkpoint_info["metadata"] == {"note": "good"}
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 130), st.integers(1, 130))
def test_nearest_upsample_is_pytorchs_nearest_at_every_size(h, w, out_h, out_w):
    """upsample_to's nearest gathers rows and columns at fractional factors (so that litert-torch,
    which lowers F.interpolate's nearest as nearest-exact, converts it right): same numbers."""
    from slimdepth.models.blocks import upsample_to

    x = torch.randn(1, 2, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))
    got = upsample_to(x, (out_h, out_w), "nearest")
    assert torch.equal(got, torch.nn.functional.interpolate(x, size=(out_h, out_w), mode="nearest"))


def _assert_saves_and_exports(model, x: torch.Tensor, tmp_path) -> None:
    """The model's weights load back to the same outputs, and its static ONNX export matches it."""
    from slimdepth.deploy.export import ExportSettings, export_model
    from slimdepth.deploy.exported import load_exported

    weights = save_model(model, tmp_path / "m.safetensors")
    loaded = slimdepth.load(weights)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    export_model(model, tmp_path / "m.onnx", ExportSettings("onnx", tuple(x.shape[-2:])))
    runner = load_exported(tmp_path / "m.onnx")
    with torch.no_grad():
        torch.testing.assert_close(runner(x), model(x), rtol=1e-4, atol=1e-3)


def test_road_prior_head_corrects_the_flat_road_of_a_kitti_like_camera(tmp_path):
    """``road_prior``: depth = flat road under a level KITTI-like camera x exp(r), r from one conv
    that starts at 0; the option saves with the model, and the exported ONNX graph matches."""
    import numpy as np

    from slimdepth.geometry import kitti_like_intrinsics

    torch.manual_seed(0)
    model = build_model("litedepth", internal_size="none", road_prior=True).eval()
    x = torch.rand(1, 3, 96, 320)
    with torch.no_grad():
        low = model.predict(x)["scales"][0][0, 0].numpy()
    K = kitti_like_intrinsics(24, 80)  # the head's resolution: a quarter of the input
    v = np.arange(24, dtype=np.float64)
    road = np.where(v > K[1, 2], K[1, 1] * 1.65 / np.maximum(v - K[1, 2], 1e-9), np.inf)
    np.testing.assert_allclose(low[:, 5], np.minimum(road, 80.0), rtol=1e-5)
    assert (low == low[:, :1]).all()  # the same in every column
    with torch.no_grad():
        model.head.conv.bias.fill_(np.log(0.5))
        half = model.predict(x)["scales"][0][0, 0].numpy()
    np.testing.assert_allclose(half, 0.5 * low, rtol=1e-5)  # the correction is a factor
    assert model.config["road_prior"] is True and "road_prior" not in build_model("litedepth").config
    _assert_saves_and_exports(model, x, tmp_path)
    with pytest.raises(ConfigError, match="road_prior"):
        build_model("litedepth", road_prior="yes")
    # resized inside the network (to 32x40 at the head): each head row still gets the road depth
    # of the input row its centre falls on, with the input's focal length
    inner = build_model("litedepth", internal_size="128x160", road_prior=True).eval()
    with torch.no_grad():
        low = inner.predict(x)["scales"][0][0, 0].numpy()
    K = kitti_like_intrinsics(96, 320)
    v = (np.arange(32) + 0.5) * 96 / 32 - 0.5
    road = np.where(v > K[1, 2], K[1, 1] * 1.65 / np.maximum(v - K[1, 2], 1e-9), np.inf)
    np.testing.assert_allclose(low[:, 3], np.minimum(road, 80.0), rtol=1e-5)


def _popup_with(road_logit: torch.Tensor, correction: float = 0.0):
    """A PopUpHead at 24x80 whose road logits are ``road_logit`` (1x1x24x80) and whose correction is
    a constant, and the flat road it stands things on."""
    from slimdepth.models.blocks import PopUpHead

    head = PopUpHead(4, 80.0).eval()

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.cat([road_logit, torch.full_like(road_logit, correction)], 1)

    del head.conv
    head.conv = Fixed()
    return head, head.prior(24, 80)[0, 0]


def test_popup_head_stands_things_on_the_flat_road_at_the_depth_of_their_foot():
    """Known answers: all road is the flat road; a column whose pixels are not road from row b up
    is the flat road's depth at b there (below b its own row's); a soft road probability mixes the
    two as the expectation over where the first non-road pixel lies, worked out here by a loop."""
    import numpy as np

    road = torch.full((1, 1, 24, 80), 30.0)
    head, flat = _popup_with(road)
    with torch.no_grad():
        # (road logits clip at 15: p = 1 - 3e-7 per row, so all road is the flat road to 1e-5)
        torch.testing.assert_close(head(torch.zeros(1, 4, 24, 80))[0, 0], flat.clamp(max=80.0), rtol=1e-5, atol=0)
        wall = road.clone()
        wall[..., :19, :40] = -30.0  # a wall in the left half, its foot at row 18
        head, flat = _popup_with(wall, correction=float(np.log(2.0)))
        y = head(torch.zeros(1, 4, 24, 80))[0, 0]
    assert 9.0 < float(flat[18, 0]) < 12.0  # about 10 m away: the foot is below the horizon
    close = {"rtol": 1e-5, "atol": 0.0}
    torch.testing.assert_close(y[:19, :40], 2.0 * flat[18, 0].expand(19, 40), **close)  # upright, times the correction
    torch.testing.assert_close(y[19:, :40], 2.0 * flat[19:, :40], **close)
    torch.testing.assert_close(y[:, 40:], (2.0 * flat[:, 40:]).clamp(max=80.0), **close)
    # soft: p per row from a seeded draw; the expectation by a loop over the first non-road row
    logits = torch.randn(1, 1, 24, 80, generator=torch.Generator().manual_seed(3)) * 2
    head, flat = _popup_with(logits)
    with torch.no_grad():
        y = head(torch.zeros(1, 4, 24, 80))[0, 0].double().numpy()
    p = torch.sigmoid(logits)[0, 0].double().numpy()
    z = flat.double().numpy()
    _assert_expectation(y, p, z)
    # far past the clip (+-15): the sky and walls of a real column say "not road" very loudly
    loud = logits * 40
    head, _ = _popup_with(loud)
    with torch.no_grad():
        y = head(torch.zeros(1, 4, 24, 80))[0, 0].double().numpy()
    _assert_expectation(y, torch.sigmoid(loud.clamp(-15, 15))[0, 0].double().numpy(), z)


def _assert_expectation(y, p, z) -> None:
    """y (24x80) is the expected flat-road depth at the first non-road row from the bottom, by a loop."""
    for col in (0, 17, 79):
        for v in (0, 5, 12, 23):
            expected, still_road = 0.0, 1.0  # walking up from the bottom row
            for b in range(23, v - 1, -1):
                expected += still_road * (1 - p[b, col]) * z[b, col]  # row b is the first non-road pixel
                still_road *= p[b, col]
            expected += still_road * z[v, col]  # road all the way up to v
            assert y[v, col] == pytest.approx(min(expected, 80.0), rel=1e-5)


def test_popup_option_trains_saves_and_exports(tmp_path):
    """``road_prior: popup``: the head starts as nearly all road, gradients reach both of its
    outputs, the option saves with the model and the exported ONNX graph (cumulative sums) matches."""
    from slimdepth.models.blocks import PopUpHead

    torch.manual_seed(0)
    model = build_model("litedepth", internal_size="none", road_prior="popup")
    assert isinstance(model.head, PopUpHead) and model.config["road_prior"] == "popup"
    x = torch.rand(2, 3, 96, 320)
    model.train()
    model.predict(x)["scales"][0].log().mean().backward()
    grad = model.head.conv.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and (grad[0] != 0).any() and (grad[1] != 0).any()
    model.eval()
    with torch.no_grad():
        low = model.predict(x)["scales"][0]
        flat = model.head.prior(24, 80)
    assert torch.isfinite(low).all() and (low > 0).all()
    # it starts as road everywhere at p = sigmoid(3): the bottom row is exactly the flat road, and a
    # row k rows up is at least the flat road's depth k rows down times p ** (k + 1)
    torch.testing.assert_close(low[..., -1, :], flat[..., -1, :].expand_as(low[..., -1, :]))
    p = torch.sigmoid(torch.tensor(3.0))
    assert (low[..., -6, :] >= 0.999 * p ** 6 * flat[..., -6, :]).all() and (low <= flat + 1e-4).all()
    _assert_saves_and_exports(model, x[:1], tmp_path)
    for bad in ("yes", "Popup", "true", 1, None, ["popup"], {"popup": 1}):
        with pytest.raises(ConfigError, match="road_prior"):
            build_model("litedepth", road_prior=bad)
