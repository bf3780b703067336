"""Pickle-free training state: exact round trips, bit-identical resumption, errors."""

from __future__ import annotations

import json
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from torch import nn

from slimdepth.errors import DataError
from slimdepth.train.optim import build_optimizer, build_scheduler, clip_gradients
from slimdepth.train.state import (
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
    training_state_paths,
)

OPTIMS = {
    "adamw": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.05},
    "sgd": {"name": "sgd", "lr": 5e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
}


class LossWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(2))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        losses = torch.stack([a, b])
        return (0.5 * torch.exp(-self.log_vars) * losses + torch.log1p(torch.exp(self.log_vars))).sum()


class Tiny(nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.bn(self.conv(x)))))


def make_run(optim: str, init_seed: int, width: int = 4):
    torch.manual_seed(init_seed)
    model, weights = Tiny(width), LossWeights()
    opt = build_optimizer(model, OPTIMS[optim], extra_groups=[{"name": "loss", "params": weights, "lr": 0.1}])
    sched = build_scheduler(opt, {"name": "cosine", "warmup_steps": 3, "warmup_start": 0.1}, total_steps=12)
    return model, weights, opt, sched


def targets(optim: str, init_seed: int):
    """(model, optimizer, scheduler) of a fresh run, the arguments of load_training_state."""
    model, _, opt, sched = make_run(optim, init_seed)
    return model, opt, sched


def train_steps(model: nn.Module, weights: LossWeights, opt: torch.optim.Optimizer, sched, n: int) -> None:
    """A few steps whose data draw on all three global RNGs (torch, numpy, random)."""
    model.train()
    for _ in range(n):
        x = torch.rand(2, 3, 6, 6) * float(np.random.uniform(0.5, 1.5))
        if random.random() < 0.5:
            x = x.flip(-1)
        target = torch.rand(2, 1, 6, 6)
        pred = model(x)
        loss = weights((pred - target).abs().mean(), (pred - target).pow(2).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(list(model.parameters()) + list(weights.parameters()), 1.0)
        opt.step()
        sched.step()


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_optimizer_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for index in a["state"]:
        assert a["state"][index].keys() == b["state"][index].keys()
        for name, value in a["state"][index].items():
            other = b["state"][index][name]
            assert torch.equal(value, other) and value.dtype == other.dtype, (index, name)


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_resume_is_bit_identical(tmp_path: Path, optim: str) -> None:
    # uninterrupted reference: 9 steps
    ref = make_run(optim, init_seed=0)
    seed_all(1)
    train_steps(*ref, 9)

    # interrupted run: 5 steps, save, clobber everything, rebuild differently, load, 4 steps
    run = make_run(optim, init_seed=0)
    seed_all(1)
    train_steps(*run, 5)
    model, weights, opt, sched = run
    stem = tmp_path / "ckpt" / "last"
    save_training_state(stem, model, opt, sched, extra={"step": 5, "epoch": 0, "index_in_epoch": 10,
                                                        "best_metric": float("inf"),
                                                        "loss_weights": weights.state_dict()})
    saved_opt, saved_lr, saved_epoch = opt.state_dict(), sched.get_last_lr(), sched.last_epoch
    seed_all(123)
    torch.rand(100)

    model2, weights2, opt2, sched2 = make_run(optim, init_seed=42)
    extra = load_training_state(stem, model2, opt2, sched2)
    weights2.load_state_dict(extra.pop("loss_weights"))
    assert extra == {"step": 5, "epoch": 0, "index_in_epoch": 10, "best_metric": float("inf")}
    assert_same_tensors(model.state_dict(), model2.state_dict())
    assert_same_optimizer_state(saved_opt, opt2.state_dict())
    assert sched2.last_epoch == saved_epoch == 5 and sched2.get_last_lr() == saved_lr
    assert [g["lr"] for g in opt2.param_groups] == saved_lr

    train_steps(model2, weights2, opt2, sched2, 4)
    assert_same_tensors(ref[0].state_dict(), model2.state_dict())
    assert_same_tensors(ref[1].state_dict(), weights2.state_dict())
    assert_same_optimizer_state(ref[2].state_dict(), opt2.state_dict())
    assert ref[3].get_last_lr() == sched2.get_last_lr()


def test_file_layout_and_formats(tmp_path: Path) -> None:
    model, weights, opt, sched = make_run("adamw", 0)
    seed_all(0)
    train_steps(model, weights, opt, sched, 2)
    paths = save_training_state(tmp_path / "s", model, opt, sched, extra={"note": "x", "arr": np.arange(3)})
    assert [p.name for p in paths] == ["s.safetensors", "s.state.safetensors", "s.state.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left

    weights_file = safetensors.torch.load_file(paths[0])
    assert_same_tensors(weights_file, model.state_dict())
    tensors = safetensors.torch.load_file(paths[1])
    assert tensors["rng.torch"].dtype == torch.uint8
    assert {"optim.state.0.exp_avg", "optim.state.0.exp_avg_sq", "optim.state.0.step", "extra.arr"} <= set(tensors)

    meta = json.loads(paths[2].read_text())
    assert meta["format"] == "slimdepth-training-state" and meta["version"] == 1
    assert meta["extra"]["note"] == "x" and meta["extra"]["arr"] == {"__ndarray__": "extra.arr"}
    assert meta["optimizer"]["class"] == "AdamW"
    assert meta["optimizer"]["param_names"][0] == "conv.weight"
    assert meta["optimizer"]["param_names"][-1] is None  # the loss weights are not part of the model
    assert meta["scheduler"]["state_dict"]["last_epoch"] == 2
    groups = meta["optimizer"]["state_dict"]["param_groups"]
    assert groups[0]["betas"] == {"__tuple__": [0.9, 0.999]}
    assert meta["rng"]["python"][0] == 3 and len(meta["rng"]["python"][1]) == 625
    assert meta["rng"]["numpy"][0] == "MT19937" and len(meta["rng"]["numpy"][1]) == 624


def test_weights_header_metadata(tmp_path: Path) -> None:
    model = Tiny()
    save_training_state(tmp_path / "h", model, None, None, rng=False, weights_metadata={"format": "slimdepth-model"})
    with safetensors.safe_open(tmp_path / "h.safetensors", "pt") as fh:
        assert fh.metadata() == {"format": "slimdepth-model"}
    load_training_state(tmp_path / "h", Tiny())


def test_extra_round_trip(tmp_path: Path) -> None:
    model = Tiny()
    extra = {
        "step": 7, "best_metric": 0.25, "worst": float("-inf"), "name": "run", "flag": True, "none": None,
        "tuple": (1, "a", (2.5,)), "list": [1, [2, 3]], "by_index": {0: "a", 3: "b"},
        "tensor": torch.arange(6, dtype=torch.int64).reshape(2, 3), "half": torch.ones(2, dtype=torch.float16),
        "nested": {"t": torch.zeros(0), "again": torch.ones(1)}, "array": np.linspace(0, 1, 5, dtype=np.float32),
        "np_scalar": np.float64(1.5),
    }
    save_training_state(tmp_path / "x", model, None, None, extra=extra, rng=False)
    back = load_training_state(tmp_path / "x", Tiny())
    assert back["tuple"] == (1, "a", (2.5,)) and back["list"] == [1, [2, 3]] and back["by_index"] == {0: "a", 3: "b"}
    assert back["worst"] == float("-inf") and back["np_scalar"] == 1.5 and back["none"] is None
    assert torch.equal(back["tensor"], extra["tensor"]) and back["half"].dtype == torch.float16
    assert back["nested"]["t"].shape == (0,) and torch.equal(back["nested"]["again"], torch.ones(1))
    assert isinstance(back["array"], np.ndarray) and np.array_equal(back["array"], extra["array"])


def test_shared_tensors_in_extra_are_saved(tmp_path: Path) -> None:
    t = torch.ones(3)
    save_training_state(tmp_path / "x", Tiny(), None, None, extra={"a": t, "b": t}, rng=False)
    back = load_training_state(tmp_path / "x", Tiny())
    assert torch.equal(back["a"], t) and torch.equal(back["b"], t)


def test_unstorable_extra_is_rejected_before_writing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"extra\.fn: cannot store a function"):
        save_training_state(tmp_path / "x", Tiny(), None, None, extra={"fn": lambda: None})
    with pytest.raises(TypeError, match="all strings or all integers"):
        save_training_state(tmp_path / "x", Tiny(), None, None, extra={"m": {1: 1, "a": 2}})
    assert not list(tmp_path.iterdir())


def test_rng_capture_and_restore() -> None:
    tensors, info = capture_rng_state()
    json.dumps(info)  # JSON-able
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    restore_rng_state(tensors, info)
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_rng_restore_rejects_garbage() -> None:
    with pytest.raises(DataError, match="invalid RNG state"):
        restore_rng_state({"torch": torch.zeros(10)}, {})
    with pytest.raises(DataError, match="invalid RNG state"):
        restore_rng_state({}, {"numpy": ["MT19937", [1, 2], 0, 0, 0.0]})


def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, weights, opt, sched = make_run("sgd", 0)
    save_training_state(tmp_path / "s", model, opt, sched, extra={"t": torch.ones(1)})

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    load_training_state(tmp_path / "s", *targets("sgd", 1))


def test_stem_accepts_file_names(tmp_path: Path) -> None:
    stem = tmp_path / "run.v2"
    expected = training_state_paths(stem)
    assert expected[0].name == "run.v2.safetensors"
    assert training_state_paths(f"{stem}.state.json") == expected
    assert training_state_paths(f"{stem}.safetensors") == expected


def test_wrapped_model_saves_plain_keys(tmp_path: Path) -> None:
    model = Tiny()
    wrapped = nn.DataParallel(model)
    save_training_state(tmp_path / "w", wrapped, None, None, rng=False)
    assert set(safetensors.torch.load_file(tmp_path / "w.safetensors")) == set(model.state_dict())
    load_training_state(tmp_path / "w", Tiny())


# --------------------------------------------------------------------------- errors


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model, weights, opt, sched = make_run("adamw", 0)
    seed_all(0)
    train_steps(model, weights, opt, sched, 2)
    save_training_state(tmp_path / "s", model, opt, sched, extra={"step": 2})
    return tmp_path / "s"


def test_missing_files(saved: Path) -> None:
    model, _, opt, sched = make_run("adamw", 1)
    Path(f"{saved}.state.safetensors").unlink()
    with pytest.raises(DataError, match=r"s\.state\.safetensors: tensor file of s\.state\.json not found"):
        load_training_state(saved, model, opt, sched)
    Path(f"{saved}.state.json").unlink()
    with pytest.raises(DataError, match=r"s\.state\.json: training state not found"):
        load_training_state(saved, model, opt, sched)


def test_corrupt_json(saved: Path) -> None:
    json_path = Path(f"{saved}.state.json")
    json_path.write_text(json_path.read_text()[:200])
    with pytest.raises(DataError, match=r"s\.state\.json: corrupt training state \(invalid JSON"):
        load_training_state(saved, Tiny())
    json_path.write_text('{"format": "something-else"}')
    with pytest.raises(DataError, match="not a slimdepth training state"):
        load_training_state(saved, Tiny())


@pytest.mark.parametrize("which", ["s.safetensors", "s.state.safetensors"])
def test_corrupt_or_truncated_tensor_files(saved: Path, which: str) -> None:
    path = saved.parent / which
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # same size, one flipped byte
    path.write_bytes(bytes(data))
    model, _, opt, sched = make_run("adamw", 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DataError, match=re.escape(f"{which}: contents do not match s.state.json")):
        load_training_state(saved, model, opt, sched)
    assert_same_tensors(before, model.state_dict())  # nothing modified
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(DataError, match="contents do not match"):
        load_training_state(saved, model, opt, sched)


def test_checksum_catches_a_mix_of_two_saves(saved: Path, tmp_path: Path) -> None:
    model, weights, opt, sched = make_run("adamw", 0)
    other = tmp_path / "other"
    save_training_state(other, model, opt, sched, extra={"step": 0})
    Path(f"{other}.safetensors").replace(f"{saved}.safetensors")  # as if the JSON rename never happened
    with pytest.raises(DataError, match=r"s\.safetensors: contents do not match"):
        load_training_state(saved, model, opt, sched)


@pytest.mark.parametrize("written", [0.0, 0.5])
def test_interrupted_save_keeps_previous_state(saved: Path, monkeypatch: pytest.MonkeyPatch, written: float) -> None:
    """The writer dies on the tensor file, before any byte (0.0) or with half of them on the path
    it was given (0.5): each file goes to a temporary name and is renamed, so the saved state
    stays byte for byte as it was either way (only the second case can tell an in-place write)."""
    import slimdepth.train.state as state_module

    before = {p.name: p.read_bytes() for p in saved.parent.iterdir()}
    real_write = state_module._write_bytes
    calls = []

    def failing_write(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:  # die while writing the tensor file
            if written:
                real_write(path, data[: int(len(data) * written)])
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(state_module, "_write_bytes", failing_write)
    model, weights, opt, sched = make_run("adamw", 5)
    with pytest.raises(OSError, match="disk full"):
        save_training_state(saved, model, opt, sched, extra={"step": 99})
    assert {p.name: p.read_bytes() for p in saved.parent.iterdir()} == before  # untouched, no temp files
    monkeypatch.undo()
    assert load_training_state(saved, *targets("adamw", 1))["step"] == 2


def test_model_of_another_shape(saved: Path) -> None:
    model, _, opt, sched = make_run("adamw", 1, width=8)
    with pytest.raises(DataError, match=r"s\.safetensors: weights do not fit Tiny: shape mismatch conv\.weight"):
        load_training_state(saved, model, opt, sched)
    with pytest.raises(DataError, match=r"missing .*unexpected"):
        load_training_state(saved, nn.Sequential(nn.Linear(2, 2)))


def test_optimizer_of_another_kind_or_shape(saved: Path) -> None:
    model, _, opt, sched = make_run("sgd", 1)
    with pytest.raises(DataError, match="optimizer state is for AdamW, not SGD"):
        load_training_state(saved, model, opt, sched)
    plain = build_optimizer(model, OPTIMS["adamw"])  # no loss-weight group
    with pytest.raises(DataError, match="3 param groups, the optimizer has 2"):
        load_training_state(saved, model, plain, None)
    model.bn.requires_grad_(False)
    fewer = build_optimizer(model, OPTIMS["adamw"], extra_groups=[{"params": LossWeights()}])
    with pytest.raises(DataError, match="param group 1 has"):
        load_training_state(saved, model, fewer, None)


def test_optimizer_parameter_order_is_checked(saved: Path) -> None:
    model, weights, _, _ = make_run("adamw", 1)
    groups = [{"name": "decay", "params": [model.head.weight, model.conv.weight], "weight_decay": 0.05},
              {"name": "no_decay", "params": [model.conv.bias, model.bn.weight, model.bn.bias, model.head.bias],
               "weight_decay": 0.0},
              {"name": "loss", "params": list(weights.parameters()), "lr": 0.1}]
    opt = torch.optim.AdamW(groups, lr=1e-2)
    with pytest.raises(DataError, match="optimizer parameter 0 was 'conv.weight', now it is 'head.weight'"):
        load_training_state(saved, model, opt, None)


def test_missing_scheduler_state(tmp_path: Path) -> None:
    model, _, opt, sched = make_run("sgd", 0)
    save_training_state(tmp_path / "n", model, opt, None)
    with pytest.raises(DataError, match="has no scheduler state"):
        load_training_state(tmp_path / "n", model, opt, sched)
    assert load_training_state(tmp_path / "n", model, opt) == {}
