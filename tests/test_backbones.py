"""Backbones: torchvision's exact names and sizes, the encoder interface, strict weight loading.

Parameter and key counts are torchvision's published/derived numbers. Key counts follow from
the architecture: every conv/linear without BN gives weight (+bias), every BN five entries
(weight, bias, running_mean, running_var, num_batches_tracked). ResNet-50: stem 1+5, 16
bottlenecks x (3 + 3x5), 4 downsamples x (1+5), fc 2 = 320. ResNet-18: 6 + 8 x 12 + 3 x 6 + 2
= 122. MobileNetV3-Large: stem 6, 15 blocks with 44 conv+BN pairs (block 1 has no expand)
x 6, 8 SE x 4, head 6, classifier 4 = 312. Small: 6 + 32 x 6 + 9 SE x 4 + 6 + 4 = 244.
Counting and key checks build models on the meta device (no memory, no init cost).
"""

from __future__ import annotations

import functools
import os

import pytest
import torch
from safetensors.torch import save_file

from slimdepth.errors import ConfigError, DataError
from slimdepth.models.backbones import (
    build_classifier,
    build_encoder,
    list_backbones,
    load_pretrained,
    load_state_dict_file,
    resnet18,
)

PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_small_minimal": 2_044_736,  # timm's mobilenetv3_small_minimal_100: 2.04 M
    "mobilenet_v1": 4_231_976,
}
KEYS = {"resnet18": 122, "resnet34": 218, "resnet50": 320, "mobilenet_v3_large": 312, "mobilenet_v3_small": 244,
        "mobilenet_v3_small_minimal": 208, "mobilenet_v1": 164}

#: torchvision key -> shape, for keys whose place in the structure is easy to get wrong
KNOWN_KEYS = {
    "resnet50": {
        "conv1.weight": (64, 3, 7, 7),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.running_var": (256,),
        "layer2.0.conv2.weight": (128, 128, 3, 3),  # v1.5: the stride sits on this conv
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "layer4.2.bn3.num_batches_tracked": (),
        "fc.weight": (1000, 2048),
    },
    "resnet18": {
        "layer1.1.bn2.running_mean": (64,),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer4.1.conv2.weight": (512, 512, 3, 3),
        "fc.bias": (1000,),
    },
    "mobilenet_v3_large": {
        "features.0.0.weight": (16, 3, 3, 3),
        "features.1.block.0.0.weight": (16, 1, 3, 3),  # expand ratio 1: block.0 is the depthwise conv
        "features.1.block.1.0.weight": (16, 16, 1, 1),  # ... and block.1 the projection
        "features.2.block.0.0.weight": (64, 16, 1, 1),
        "features.4.block.1.0.weight": (72, 1, 5, 5),
        "features.4.block.2.fc1.weight": (24, 72, 1, 1),  # _make_divisible(72 // 4, 8) = 24
        "features.4.block.2.fc2.bias": (72,),
        "features.4.block.3.1.running_var": (40,),
        "features.13.block.2.fc1.weight": (168, 672, 1, 1),
        "features.15.block.3.0.weight": (160, 960, 1, 1),
        "features.16.0.weight": (960, 160, 1, 1),
        "classifier.0.weight": (1280, 960),
        "classifier.3.bias": (1000,),
    },
    "mobilenet_v3_small": {
        "features.1.block.0.0.weight": (16, 1, 3, 3),
        "features.1.block.1.fc1.weight": (8, 16, 1, 1),  # SE right after the depthwise conv
        "features.1.block.2.0.weight": (16, 16, 1, 1),
        "features.9.block.2.fc2.weight": (288, 72, 1, 1),
        "features.9.block.3.0.weight": (96, 288, 1, 1),
        "features.12.0.weight": (576, 96, 1, 1),
        "classifier.0.weight": (1024, 576),
        "classifier.3.weight": (1000, 1024),
    },
    "mobilenet_v1": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.0.weight": (32, 1, 3, 3),
        "features.1.3.weight": (64, 32, 1, 1),
        "features.13.4.running_mean": (1024,),
        "fc.weight": (1000, 1024),
    },
}

#: channels of the stride 2, 4, 8, 16, 32 features
ENCODER_CHANNELS = {
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
    "mobilenet_v3_large": (16, 24, 40, 112, 160),
    "mobilenet_v3_small": (16, 16, 24, 48, 96),
    "mobilenet_v3_small_minimal": (16, 16, 24, 48, 96),
    "mobilenet_v1": (64, 128, 256, 512, 1024),
}
CLASSIFIER = {"resnet18": "fc.", "resnet34": "fc.", "resnet50": "fc.", "mobilenet_v1": "fc.",
              "mobilenet_v3_large": "classifier.", "mobilenet_v3_small": "classifier.",
              "mobilenet_v3_small_minimal": "classifier."}
HEAD = {"mobilenet_v3_large": "features.16.", "mobilenet_v3_small": "features.12.",
        "mobilenet_v3_small_minimal": "features.12."}


def meta_state(module_fn, *args, **kw) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return module_fn(*args, **kw).state_dict()


def test_names_cover_all_families() -> None:
    assert list_backbones() == list(PARAMS)


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_and_key_counts(name: str) -> None:
    with torch.device("meta"):
        model = build_classifier(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert len(model.state_dict()) == KEYS[name]


@pytest.mark.parametrize("name", list(KNOWN_KEYS))
def test_known_torchvision_keys(name: str) -> None:
    state = meta_state(build_classifier, name)
    shapes = {k: tuple(state[k].shape) for k in KNOWN_KEYS[name] if k in state}
    assert shapes == KNOWN_KEYS[name]


@pytest.mark.parametrize("name", list(PARAMS))
def test_encoder_keys_are_classifier_keys_minus_classifier_and_head(name: str) -> None:
    full = meta_state(build_classifier, name)
    enc = meta_state(build_encoder, name)
    dropped = (CLASSIFIER[name],) + ((HEAD[name],) if name in HEAD else ())
    assert list(enc) == [k for k in full if not k.startswith(dropped)]
    assert all(enc[k].shape == full[k].shape for k in enc)
    if name in HEAD:
        kept = meta_state(build_encoder, name, drop_head=False)
        assert list(kept) == [k for k in full if not k.startswith(CLASSIFIER[name])]


@pytest.mark.parametrize("name", list(PARAMS))
def test_encoder_features(name: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(name).eval()
    assert enc.channels == ENCODER_CHANNELS[name]
    assert enc.strides == (2, 4, 8, 16, 32)
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 96 // s) for c, s in zip(enc.channels, enc.strides)]


@pytest.mark.parametrize("name, head", [("mobilenet_v3_large", 960), ("mobilenet_v3_small", 576)])
def test_mobilenet_v3_head_kept_on_request(name: str, head: int) -> None:
    enc = build_encoder(name, drop_head=False).eval()
    assert enc.channels == ENCODER_CHANNELS[name][:4] + (head,)
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 96))
    assert tuple(feats[-1].shape) == (1, head, 2, 3)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "mobilenet_v1"])
def test_classifier_forward_and_eval_determinism(name: str) -> None:
    torch.manual_seed(0)
    model = build_classifier(name, num_classes=10).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 10)
        assert torch.equal(out, model(x))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "mobilenet_v1"])
def test_encoder_eval_determinism(name: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(name).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = enc(x), enc(x.clone())
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_weight_init_like_torchvision() -> None:
    torch.manual_seed(0)
    model = resnet18()
    assert torch.all(model.layer1[0].bn2.weight == 1) and torch.all(model.bn1.bias == 0)
    # Kaiming normal, fan_out: std = sqrt(2 / (out_channels * k * k))
    w = model.layer3[0].conv2.weight
    assert w.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)
    zeroed = resnet18(zero_init_residual=True)
    assert torch.all(zeroed.layer1[0].bn2.weight == 0) and torch.all(zeroed.layer1[0].bn1.weight == 1)
    enc = build_encoder("resnet50", zero_init_residual=True)
    assert torch.all(enc.layer4[2].bn3.weight == 0) and torch.all(enc.layer4[2].bn2.weight == 1)


@functools.cache
def _trained_like(name: str) -> dict[str, torch.Tensor]:
    """A classifier state dict with random values everywhere (running stats included).

    Cached: callers copy it before changing it.
    """
    gen = torch.Generator().manual_seed(1)
    return {k: (torch.randint(0, 100, v.shape, generator=gen) if not v.is_floating_point()
                else torch.randn(v.shape, generator=gen))
            for k, v in meta_state(build_classifier, name).items()}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "mobilenet_v1"])
@pytest.mark.parametrize("fmt", [".pth", ".safetensors"])
def test_classifier_file_loads_into_encoder(tmp_path, name: str, fmt: str) -> None:
    state = _trained_like(name)
    path = tmp_path / f"weights{fmt}"
    if fmt == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    enc = build_encoder(name)
    skipped = load_pretrained(enc, path)
    dropped = (CLASSIFIER[name],) + ((HEAD[name],) if name in HEAD else ())
    assert sorted(skipped) == sorted(k for k in state if k.startswith(dropped)) and skipped
    loaded = enc.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.items())
    # and the full classifier takes the same file back exactly
    full = build_classifier(name)
    assert load_pretrained(full, path) == []
    assert all(torch.equal(v, state[k]) for k, v in full.state_dict().items())


def test_checkpoint_wrappers_ddp_prefix_and_old_files(tmp_path) -> None:
    state = _trained_like("resnet18")
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    assert list(load_state_dict_file(tmp_path / "ckpt.pth")) == list(state)
    torch.save({"model": state, "step": 10}, tmp_path / "model.pt")
    assert list(load_state_dict_file(tmp_path / "model.pt")) == list(state)
    # torchvision files from before num_batches_tracked existed still load
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    enc = build_encoder("resnet18")
    load_pretrained(enc, old)
    assert torch.equal(enc.layer1[0].bn1.running_var, state["layer1.0.bn1.running_var"])


def _error(module, state) -> str:
    with pytest.raises(ConfigError) as info:
        load_pretrained(module, state)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_mismatches_raise_config_error_naming_keys() -> None:
    enc = build_encoder("mobilenet_v3_small")
    state = _trained_like("mobilenet_v3_small")
    before = {k: v.clone() for k, v in enc.state_dict().items()}

    missing = dict(state)
    del missing["features.3.block.1.0.weight"]
    assert "1 missing key (features.3.block.1.0.weight)" in _error(enc, missing)

    extra = dict(state, **{"decoder.conv.weight": torch.zeros(1)})
    assert "1 unexpected key (decoder.conv.weight)" in _error(enc, extra)
    assert "decoder.conv.weight" in load_pretrained(build_encoder("mobilenet_v3_small"), extra, ignore=("decoder.",))

    wrong = dict(state, **{"features.0.0.weight": torch.zeros(16, 3, 5, 5)})
    message = _error(enc, wrong)
    assert "features.0.0.weight: expected (16, 3, 3, 3), got (16, 3, 5, 5)" in message

    # a failed load changes nothing
    assert all(torch.equal(v, before[k]) for k, v in enc.state_dict().items())


def test_many_missing_keys_are_counted() -> None:
    enc = build_encoder("resnet18")
    message = _error(enc, {"conv1.weight": torch.zeros(64, 3, 7, 7)})
    assert "missing keys (bn1.weight, bn1.bias" in message and "more)" in message
    assert message.count(",") < 20  # first few keys, not all 100


def test_head_is_only_tolerated_when_dropped() -> None:
    state = _trained_like("mobilenet_v3_large")
    headless = {k: v for k, v in state.items() if not k.startswith("features.16.")}
    load_pretrained(build_encoder("mobilenet_v3_large"), headless)
    message = _error(build_encoder("mobilenet_v3_large", drop_head=False), headless)
    assert "missing keys (features.16.0.weight" in message
    # a ResNet loses its fc, but a head key is unexpected there
    r18 = _trained_like("resnet18")
    assert "unexpected key (features.16.0.weight)" in _error(build_encoder("resnet18"), dict(r18, **{
        "features.16.0.weight": torch.zeros(1)}))


def test_pickled_objects_are_refused(tmp_path) -> None:
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(DataError, match="evil.pth.*refused"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_unreadable_files_raise_data_error(tmp_path) -> None:
    cases = {"random.pth": os.urandom(256), "random.safetensors": os.urandom(256), "empty.pt": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.zeros(100)}, str(good))
    (tmp_path / "truncated.safetensors").write_bytes(good.read_bytes()[:-50])
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    torch.save({"w": torch.zeros(1), "note": "text"}, tmp_path / "mixed.pth")
    (tmp_path / "weights.npz").write_bytes(b"x")
    for name in [*cases, "truncated.safetensors", "list.pth", "mixed.pth", "weights.npz", "absent.pth"]:
        with pytest.raises(DataError, match=name.replace(".", r"\.")) as info:
            load_state_dict_file(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="absent"):
        load_pretrained(build_encoder("mobilenet_v1"), tmp_path / "absent.safetensors")


def test_unknown_names_and_options() -> None:
    with pytest.raises(ConfigError, match="unknown encoder 'resnet101'"):
        build_encoder("resnet101")
    with pytest.raises(ConfigError, match="'drop_head'"):
        build_encoder("resnet50", drop_head=True)
    with pytest.raises(ConfigError, match="unknown classifier"):
        build_classifier("vgg16")
