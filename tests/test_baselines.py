"""Static pruning baselines: L1 magnitude (global ranking) and uniform width, to a MACs budget."""

from __future__ import annotations

import pytest
import torch
import torch_pruning as tp
from torch import nn

from slimdepth.compress.baselines import magnitude_prune, uniform_prune, uniform_width
from slimdepth.compress.graph import ChannelGraph
from slimdepth.deploy.cost import count_macs
from slimdepth.errors import ConfigError
from slimdepth.models.widths import WIDTHS_KEY, apply_widths
from slimdepth.models.zoo import build_model

SIZE = (64, 96)
METHODS = {"magnitude": magnitude_prune, "uniform": uniform_prune}


@pytest.fixture(scope="module", params=("litedepth", "resnet18-unet"))
def model(request: pytest.FixtureRequest) -> nn.Module:
    torch.manual_seed(0)
    return build_model(request.param).eval()


@pytest.mark.parametrize("target", (0.5, 0.25))
@pytest.mark.parametrize("method", sorted(METHODS))
def test_baselines_hit_the_macs_target(model: nn.Module, method: str, target: float) -> None:
    before = count_macs(model, SIZE).total
    pruned, report = METHODS[method](model, target, SIZE)
    assert count_macs(model, SIZE).total == before  # the original is left as it is
    measured = count_macs(pruned, SIZE).total
    assert measured == report.pruned_macs and report.original_macs == before
    assert measured / before == pytest.approx(target, rel=0.02)
    assert report.achieved_ratio == pytest.approx(target, rel=0.01)
    assert report.pruned_params < report.original_params
    x = torch.rand(1, 3, *SIZE)
    assert pruned(x).shape == (1, 1, *SIZE)
    for root, (channels, kept) in report.group_widths.items():
        assert pruned.get_submodule(root).out_channels == kept <= channels and kept >= 1
    if method == "uniform":  # one kept fraction for every group
        for channels, kept in report.group_widths.values():
            assert kept == uniform_width(channels, report.setting)
    # the report's layer widths rebuild the pruned architecture
    assert report.layer_widths == pruned.config[WIDTHS_KEY]
    rebuilt = apply_widths(build_model(pruned.name), report.layer_widths)
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    assert report.as_dict()["method"] == method


def test_magnitude_ranks_channels_globally() -> None:
    torch.manual_seed(0)
    model = build_model("litedepth").eval()
    pruned, report = magnitude_prune(model, 0.5, SIZE)
    graph = ChannelGraph(model, SIZE)
    scores = graph.importance(tp.importance.MagnitudeImportance(p=1))
    kept_scores, removed_scores = [], []
    for g in graph.groups:
        score = scores[g.root]
        removed = set(report.removal.get(g.root, []))
        if len(removed) == g.channels - 1 and report.group_widths[g.root][1] == 1:
            continue  # a group cut to one channel keeps its best one whatever the threshold
        kept_scores += [float(score[i]) for i in range(g.channels) if i not in removed]
        removed_scores += [float(score[i]) for i in removed]
    assert removed_scores and max(removed_scores) <= min(kept_scores)
    assert 0 < report.setting < 1


def test_uniform_keeps_the_largest_filters() -> None:
    torch.manual_seed(0)
    model = build_model("tiny-multires").eval()
    _, report = uniform_prune(model, 0.5, SIZE)
    graph = ChannelGraph(model, SIZE)
    scores = graph.importance(tp.importance.MagnitudeImportance(p=1))
    for g in graph.groups:
        score = scores[g.root]
        removed = report.removal.get(g.root, [])
        kept = [i for i in range(g.channels) if i not in removed]
        if removed:
            assert max(float(score[i]) for i in removed) <= min(float(score[i]) for i in kept)


def test_unreachable_targets_are_refused() -> None:
    model = build_model("tiny-multires").eval()
    with pytest.raises(ConfigError, match="target"):
        uniform_prune(model, 0.001, SIZE)
    with pytest.raises(ConfigError, match="target_macs_ratio"):
        magnitude_prune(model, 1.5, SIZE)
