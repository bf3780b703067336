"""Optimizer construction, weight-decay groups, lr schedules and gradient clipping."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from slimdepth.errors import ConfigError
from slimdepth.train.optim import build_optimizer, build_scheduler, clip_gradients, lr_factor


class LossWeights(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(3))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.up = nn.ConvTranspose2d(4, 4, 2, bias=False)
        self.fc = nn.Linear(4, 2)
        self.ln = nn.LayerNorm(2)
        self.gate = nn.Parameter(torch.ones(4))
        self.loss_weights = LossWeights()


def names_of(model: nn.Module, params: list[torch.Tensor]) -> set[str]:
    lookup = {id(p): n for n, p in model.named_parameters()}
    return {lookup[id(p)] for p in params}


def groups_by_name(opt: torch.optim.Optimizer) -> dict[str, dict]:
    return {g["name"]: g for g in opt.param_groups}


def test_decay_only_on_conv_and_linear_weights() -> None:
    model = Net()
    opt = build_optimizer(model, {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05})
    groups = groups_by_name(opt)
    assert set(groups) == {"decay", "no_decay"}
    assert names_of(model, groups["decay"]["params"]) == {"conv.weight", "up.weight", "fc.weight"}
    assert names_of(model, groups["no_decay"]["params"]) == {
        "conv.bias", "bn.weight", "bn.bias", "gn.weight", "gn.bias", "fc.bias", "ln.weight", "ln.bias",
        "gate", "loss_weights.log_vars",
    }
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)
    assert isinstance(opt, torch.optim.AdamW)


def test_frozen_parameters_are_left_out() -> None:
    model = Net()
    model.bn.requires_grad_(False)
    model.conv.weight.requires_grad_(False)
    opt = build_optimizer(model, {"name": "sgd", "lr": 0.1})
    names = names_of(model, [p for g in opt.param_groups for p in g["params"]])
    assert not names & {"bn.weight", "bn.bias", "conv.weight"}
    assert len(names) == len([p for p in model.parameters() if p.requires_grad])


def test_extra_group_with_own_lr_is_taken_out_of_the_model_groups() -> None:
    model = Net()
    opt = build_optimizer(model, {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
                          extra_groups=[{"name": "loss_weights", "params": model.loss_weights, "lr": 1e-2}])
    groups = groups_by_name(opt)
    assert set(groups) == {"decay", "no_decay", "loss_weights.no_decay"}
    lw = groups["loss_weights.no_decay"]
    assert lw["lr"] == 1e-2 and lw["weight_decay"] == 0.0
    assert names_of(model, lw["params"]) == {"loss_weights.log_vars"}
    assert "loss_weights.log_vars" not in names_of(model, groups["no_decay"]["params"])
    total = sum(len(g["params"]) for g in opt.param_groups)
    assert total == len(list(model.parameters()))


def test_extra_group_of_plain_parameters_outside_the_model() -> None:
    model = Net()
    sigma = nn.Parameter(torch.ones(2))
    opt = build_optimizer(model, {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
                          extra_groups=[{"name": "sigma", "params": [sigma], "lr": 0.5, "weight_decay": 0.0}])
    group = groups_by_name(opt)["sigma"]
    assert group["params"] == [sigma] and group["lr"] == 0.5 and group["weight_decay"] == 0.0


def test_param_group_dicts_and_parameter_iterables() -> None:
    model = Net()
    opt = build_optimizer([{"name": "enc", "params": model.conv, "lr": 1e-4}, {"name": "head", "params": model.fc}],
                          {"name": "sgd", "lr": 1e-2, "weight_decay": 1e-3})
    groups = groups_by_name(opt)
    assert groups["enc.decay"]["lr"] == 1e-4 and groups["enc.no_decay"]["weight_decay"] == 0.0
    assert groups["head.decay"]["lr"] == 1e-2 and groups["head.decay"]["weight_decay"] == 1e-3
    flat = build_optimizer(model.fc.parameters(), {"name": "sgd", "lr": 1e-2, "weight_decay": 1e-3})
    assert len(flat.param_groups) == 1 and flat.param_groups[0]["weight_decay"] == 1e-3


def test_extra_params_shorthand_gets_no_decay() -> None:
    model = nn.Linear(3, 3)
    sigma = nn.Parameter(torch.ones(2))
    opt = build_optimizer(model, {"name": "adamw", "lr": 1e-3, "weight_decay": 0.1}, extra_params=[sigma])
    group = groups_by_name(opt)["extra"]
    assert group["params"] == [sigma] and group["weight_decay"] == 0.0 and group["lr"] == 1e-3


def test_recipe_style_section_with_nulls_and_foreign_keys() -> None:
    """None means unset; momentum/nesterov are ignored by adamw; grad_clip belongs to the trainer."""
    optim = {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "momentum": 0.9, "nesterov": False,
             "grad_clip": 1.0, "eps": None}
    opt = build_optimizer(Net(), optim)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["eps"] == 1e-8
    schedule = {"name": "cosine", "warmup_steps": 100, "warmup_ratio": None, "warmup_start": 0.01, "power": 0.9,
                "min_lr_ratio": 0.01}
    sched = build_scheduler(opt, schedule, 1000)
    assert sched.get_last_lr()[0] == pytest.approx(1e-5)
    schedule.update(warmup_steps=None, warmup_ratio=0.5)
    assert build_scheduler(opt, schedule, 10).lr_lambdas[0].keywords["warmup_steps"] == 5


def test_section_name_in_messages() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match=r"^lr_schedule\.power must be > 0"):
        build_scheduler(opt, {"name": "poly", "power": -1}, 10, section="lr_schedule")
    with pytest.raises(ConfigError, match=r"^train\.optim\.lr must be > 0"):
        build_optimizer(Net(), {"name": "sgd", "lr": 0}, section="train.optim")


def test_sgd_options_and_defaults() -> None:
    model = Net()
    opt = build_optimizer(model, {"name": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True, "betas": [0.5, 0.6]})
    assert isinstance(opt, torch.optim.SGD)
    g = opt.param_groups[0]
    assert g["momentum"] == 0.9 and g["nesterov"] is True and g["dampening"] == 0.0
    assert g["weight_decay"] == 0.0  # torch's default for SGD
    adamw = build_optimizer(model, {"name": "adamw", "lr": 1e-3, "betas": [0.8, 0.99], "eps": 1e-6})
    d = groups_by_name(adamw)["decay"]
    assert d["betas"] == (0.8, 0.99) and d["eps"] == 1e-6 and d["weight_decay"] == 0.01


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"name": "adam", "lr": 1e-3}, r"unknown optim 'adam' \(did you mean 'adamw'\?\)"),
        ({"lr": 1e-3}, "optim.name is required"),
        ({"name": "sgd"}, "optim.lr is required"),
        ({"name": "sgd", "lr": -1.0}, r"optim\.lr must be > 0"),
        ({"name": "sgd", "lr": "fast"}, r"optim\.lr must be a finite number"),
        ({"name": "sgd", "lr": True}, r"optim\.lr must be a finite number"),
        ({"name": "sgd", "lr": 0.1, "weight_decy": 0.1},
         r"unknown option 'weight_decy' \(did you mean 'optim\.weight_decay'\?\)"),
        ({"name": "sgd", "lr": 0.1, "grad_clip": 0}, r"optim\.grad_clip must be > 0"),
        ({"name": "sgd", "lr": 0.1, "weight_decay": -0.1}, r"optim\.weight_decay must be >= 0"),
        ({"name": "sgd", "lr": 0.1, "nesterov": True}, "nesterov needs momentum > 0"),
        ({"name": "sgd", "lr": 0.1, "momentum": 1.5}, r"optim\.momentum must be < 1"),
        ({"name": "sgd", "lr": 0.1, "nesterov": "yes"}, "must be true or false"),
        ({"name": "adamw", "lr": 0.1, "betas": [0.9]}, r"optim\.betas must be two numbers"),
        ({"name": "adamw", "lr": 0.1, "eps": 0}, r"optim\.eps must be > 0"),
    ],
)
def test_optimizer_config_errors(cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_optimizer(Net(), cfg)


def test_invalid_extra_group_lr_is_a_config_error() -> None:
    model = Net()
    with pytest.raises(ConfigError, match=r"extra_groups group lw\.lr must be >= 0"):
        build_optimizer(model, {"name": "sgd", "lr": 0.1},
                        extra_groups=[{"name": "lw", "params": model.loss_weights, "lr": -1.0}])


def test_all_frozen_is_an_error() -> None:
    model = Net().requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(model, {"name": "adamw", "lr": 1e-3})


# --------------------------------------------------------------------------- schedules


def lrs_over(cfg: dict, total: int, base_lr: float, steps: int) -> list[float]:
    """lr used by each of the first ``steps`` optimizer steps (scheduler stepped after each)."""
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    sched = build_scheduler(opt, cfg, total)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_poly_by_hand() -> None:
    lrs = lrs_over({"name": "poly", "warmup_steps": 10, "warmup_start": 0.1, "power": 2.0}, 110, 0.1, 111)
    assert lrs[0] == pytest.approx(0.01)           # 0.1 * warmup_start
    assert lrs[5] == pytest.approx(0.055)          # 0.1 * (0.1 + 0.9 * 5/10)
    assert lrs[9] == pytest.approx(0.091)          # 0.1 * (0.1 + 0.9 * 9/10)
    assert lrs[10] == pytest.approx(0.1)           # warm-up done, p = 0
    assert lrs[60] == pytest.approx(0.025)         # p = 50/100 -> 0.1 * 0.5**2
    assert lrs[109] == pytest.approx(1e-5)         # p = 99/100 -> 0.1 * 0.01**2
    assert lrs[110] == pytest.approx(0.0)          # end of schedule


def test_poly_default_power() -> None:
    lrs = lrs_over({"name": "poly"}, 100, 1.0, 51)
    assert lrs[0] == 1.0
    assert lrs[50] == pytest.approx(0.5358867312681466)  # 0.5 ** 0.9


def test_warmup_then_cosine_by_hand() -> None:
    lrs = lrs_over({"name": "cosine", "warmup_steps": 20, "min_lr_ratio": 0.1}, 100, 0.2, 101)
    assert lrs[0] == 0.0
    assert lrs[10] == pytest.approx(0.1)           # half-way through warm-up
    assert lrs[20] == pytest.approx(0.2)
    assert lrs[40] == pytest.approx(0.2 * (0.1 + 0.9 * 0.5 * (1 + math.sqrt(0.5))))  # p = 1/4
    assert lrs[60] == pytest.approx(0.11)          # p = 1/2 -> 0.2 * (0.1 + 0.9 * 0.5)
    assert lrs[100] == pytest.approx(0.02)         # min_lr_ratio * base
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))


def test_constant_with_warmup_ratio() -> None:
    lrs = lrs_over({"name": "constant", "warmup_ratio": 0.1}, 50, 0.4, 10)
    assert lrs[:6] == pytest.approx([0.0, 0.08, 0.16, 0.24, 0.32, 0.4])
    assert lrs[6:] == pytest.approx([0.4] * 4)


def test_schedule_scales_every_group_and_extends_flat_after_the_end() -> None:
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    sched = build_scheduler(opt, {"name": "cosine"}, 4)
    for _ in range(6):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0, 0.0])
    assert lr_factor(2, total_steps=4, name="cosine") == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("cfg", "total", "message"),
    [
        ({"name": "linear"}, 10, r"schedule\.name: unknown schedule 'linear'"),
        ({"name": "cosin"}, 10, r"did you mean 'cosine'"),
        ({}, 10, r"schedule\.name is required"),
        ({"name": "poly", "warmup_steps": 5, "warmup_ratio": 0.1}, 10, "not both"),
        ({"name": "poly", "warmup_steps": 11}, 10, "exceeds the total"),
        ({"name": "poly", "warmup_steps": -1}, 10, "non-negative integer"),
        ({"name": "poly", "warmup_steps": 2.5}, 10, "non-negative integer"),
        ({"name": "poly", "warmup_ratio": 1.0}, 10, r"warmup_ratio must be < 1"),
        ({"name": "poly", "power": 0}, 10, r"power must be > 0"),
        ({"name": "cosine", "min_lr_ratio": 2}, 10, r"min_lr_ratio must be <= 1"),
        ({"name": "cosine", "warmup_start": -0.5}, 10, r"warmup_start must be >= 0"),
        ({"name": "cosine", "warmup": 5}, 10, r"unknown option 'warmup'"),
        ({"name": "cosine"}, 0, "total_steps must be a positive integer"),
    ],
)
def test_scheduler_config_errors(cfg: dict, total: int, message: str) -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ConfigError, match=message):
        build_scheduler(opt, cfg, total)


# --------------------------------------------------------------------------- clipping


def params_with_grads(*grads: list[float]) -> list[nn.Parameter]:
    params = []
    for g in grads:
        p = nn.Parameter(torch.zeros(len(g)))
        p.grad = torch.tensor(g)
        params.append(p)
    return params


def test_clip_returns_total_norm_and_clips() -> None:
    params = params_with_grads([3.0], [4.0])
    norm = clip_gradients(params, 1.0)
    assert isinstance(norm, torch.Tensor) and float(norm) == pytest.approx(5.0)
    assert float(params[0].grad) == pytest.approx(0.6, rel=1e-5)
    assert float(params[1].grad) == pytest.approx(0.8, rel=1e-5)


def test_clip_below_threshold_leaves_grads() -> None:
    params = params_with_grads([0.3, 0.4])
    assert float(clip_gradients(params, 1.0)) == pytest.approx(0.5)
    assert params[0].grad.tolist() == pytest.approx([0.3, 0.4])


def test_clip_none_only_measures() -> None:
    params = params_with_grads([3.0, 4.0], [12.0])
    assert float(clip_gradients(params, None)) == pytest.approx(13.0)
    assert params[0].grad.tolist() == [3.0, 4.0] and params[1].grad.tolist() == [12.0]


def test_clip_module_without_grads_and_bad_max_norm() -> None:
    model = nn.Linear(2, 2)
    assert float(clip_gradients(model, 1.0)) == 0.0
    with pytest.raises(ConfigError, match="max_norm"):
        clip_gradients(model.parameters(), 0.0)
    with pytest.raises(ConfigError, match="max_norm"):
        clip_gradients(model.parameters(), -1)
