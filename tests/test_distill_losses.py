"""Distillation losses on known answers, the affinity against a direct double loop, level pairing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.distill.terms import (KD_TERMS, AffinityTerm, FeatureShapes, FeatureTerm, ResponseTerm, build_kd_terms,
                                     pair_levels, parse_kd_terms)
from slimdepth.errors import ConfigError, DataError
from slimdepth.losses.distill import affinity_loss, affinity_matrix, feature_loss, log_l1, response_loss


def direct_affinity_loss(s: torch.Tensor, t: torch.Tensor, keep: torch.Tensor | None = None) -> float:
    """The definition, one pair of positions at a time (float64)."""
    B, _, h, w = s.shape
    total, count = 0.0, 0
    for b in range(B):
        for i in range(h * w):
            for j in range(h * w):
                if keep is not None and not (keep[b, i] and keep[b, j]):
                    continue
                si, sj = s[b, :, i // w, i % w].double(), s[b, :, j // w, j % w].double()
                ti, tj = t[b, :, i // w, i % w].double(), t[b, :, j // w, j % w].double()
                a_s = float(si @ sj / (si.norm() * sj.norm()))
                a_t = float(ti @ tj / (ti.norm() * tj.norm()))
                total += (a_s - a_t) ** 2
                count += 1
    return total / count


def test_affinity_matches_a_direct_double_loop():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 3, 4, generator=g), torch.randn(2, 7, 3, 4, generator=g)  # widths differ: no adapter
    assert affinity_loss(s, t).item() == pytest.approx(direct_affinity_loss(s, t), rel=1e-5)


def test_masked_affinity_keeps_only_pairs_of_valid_cells():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 4, 3, 4, generator=g), torch.randn(2, 4, 3, 4, generator=g)
    mask = torch.zeros(2, 1, 6, 8, dtype=torch.bool)  # a full-resolution mask, 2x2 pixels per cell
    mask[0, 0, 0, 0] = mask[0, 0, 5, 7] = mask[0, 0, 2, 3] = True  # cells 0, 11 and 5 of image 0 (sparse points)
    mask[1] = True  # image 1 unlabeled: every position
    keep = torch.zeros(2, 12, dtype=torch.bool)
    keep[0, [0, 11, 5]] = True
    keep[1] = True
    assert affinity_loss(s, t, mask).item() == pytest.approx(direct_affinity_loss(s, t, keep), rel=1e-5)
    assert affinity_loss(s, t, torch.zeros_like(mask)).item() == 0.0  # no valid cell: an exact zero


def test_pooled_affinity_is_the_affinity_of_max_pooled_features():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(1, 3, 8, 12, generator=g), torch.randn(1, 6, 8, 12, generator=g)
    expected = direct_affinity_loss(torch.nn.functional.max_pool2d(s, 4), torch.nn.functional.max_pool2d(t, 4))
    assert affinity_loss(s, t, pool=(2, 3)).item() == pytest.approx(expected, rel=1e-5)


def test_masked_and_pooled_affinity_together():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(1, 3, 8, 12, generator=g), torch.randn(1, 5, 8, 12, generator=g)
    mask = torch.zeros(1, 1, 8, 12, dtype=torch.bool)
    mask[0, 0, 1, 1] = mask[0, 0, 6, 10] = True  # cells (0, 0) and (1, 2) of the 2x3 grid
    keep = torch.zeros(1, 6, dtype=torch.bool)
    keep[0, [0, 5]] = True
    expected = direct_affinity_loss(torch.nn.functional.max_pool2d(s, 4), torch.nn.functional.max_pool2d(t, 4), keep)
    assert affinity_loss(s, t, mask, pool=(2, 3)).item() == pytest.approx(expected, rel=1e-5)


def test_affinity_ignores_width_and_scale_of_the_features():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(2, 4, 5, 6, generator=g)
    wider = torch.cat([f, f, f], dim=1) * 7.0  # same directions in a wider, louder space
    assert affinity_loss(f, wider).item() == pytest.approx(0.0, abs=1e-10)
    a = affinity_matrix(f)
    assert a.shape == (2, 30, 30)
    assert torch.allclose(a.diagonal(dim1=1, dim2=2), torch.ones(2, 30), atol=1e-6)


def test_teacher_features_at_another_resolution_are_resized_to_the_students():
    s = torch.randn(1, 4, 3, 5)
    t = torch.nn.functional.interpolate(s, size=(6, 10), mode="nearest")  # the same map, twice as fine
    assert affinity_loss(s, t).item() == pytest.approx(0.0, abs=1e-10)


def test_response_silog_and_log_l1_known_answers():
    teacher = torch.rand(2, 1, 4, 6) * 30 + 1
    assert response_loss(teacher * 2, teacher, kind="log_l1").item() == pytest.approx(math.log(2), rel=1e-5)
    # silog with lambd = 1 is blind to a global scale; with lambd = 0.85 it is scale * sqrt(0.15) * log 2
    assert response_loss(teacher * 2, teacher, lambd=1.0).item() == pytest.approx(0.0, abs=1e-4)
    assert response_loss(teacher * 2, teacher).item() == pytest.approx(10 * math.sqrt(0.15) * math.log(2), rel=1e-4)
    # a teacher at half resolution is upsampled to the student's size
    coarse = torch.tensor([[[[10.0, 20.0, 40.0]]]]).expand(2, 1, 2, 3)
    pred = torch.nn.functional.interpolate(coarse, size=(4, 6), mode="bilinear", align_corners=False) * 2
    pred.requires_grad_(True)
    value = response_loss(pred, coarse, kind="log_l1")
    assert value.item() == pytest.approx(math.log(2), rel=1e-5)
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_log_l1_skips_invalid_teacher_pixels_and_never_returns_nan():
    pred = torch.tensor([[[[2.0, float("nan")]]]])
    teacher = torch.tensor([[[[1.0, 0.0]]]])
    assert log_l1(pred, teacher).item() == pytest.approx(math.log(2))
    assert log_l1(pred, torch.zeros_like(teacher)).item() == 0.0


def test_feature_loss_through_an_adapter():
    s = torch.randn(2, 3, 4, 5)
    adapter = torch.nn.Conv2d(3, 6, 1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(torch.cat([torch.eye(3), 2 * torch.eye(3)]).reshape(6, 3, 1, 1))
    t = torch.cat([s, 2 * s], dim=1)
    assert feature_loss(s, t, adapter).item() == pytest.approx(0.0, abs=1e-10)
    assert feature_loss(s, t + 1.0, adapter).item() == pytest.approx(1.0, rel=1e-6)  # MSE of a unit offset
    with pytest.raises(DataError, match="adapter"):
        feature_loss(s, t)  # widths 3 and 6 without an adapter


def shapes(size, **levels) -> FeatureShapes:
    return FeatureShapes(size, {k: v for k, v in levels.items()})


def test_levels_pair_by_stride_or_by_name():
    student = shapes((96, 320), dec16=(64, 6, 20), dec8=(32, 12, 40), dec4=(32, 24, 80))
    teacher = shapes((192, 640), dec1=(128, 12, 40), dec2=(64, 24, 80), dec3=(32, 48, 160), dec4=(16, 96, 320))
    assert pair_levels(None, student, teacher, None, "t") == [("dec16", "dec1"), ("dec8", "dec2"), ("dec4", "dec3")]
    assert pair_levels([("dec8", "dec4")], student, teacher, None, "t") == [("dec8", "dec4")]
    with pytest.raises(ConfigError, match="no feature 'dec2'.*dec16, dec8, dec4"):
        pair_levels([("dec2", None)], student, teacher, None, "t")
    with pytest.raises(ConfigError, match="teacher has no feature 'dec9'"):
        pair_levels([("dec8", "dec9")], student, teacher, None, "t")


def test_feature_term_builds_adapters_from_the_two_widths():
    term = FeatureTerm(levels=["dec8", "dec4:dec2"])
    term.setup(shapes((96, 320), dec8=(32, 12, 40), dec4=(24, 24, 80)),
               shapes((96, 320), dec1=(256, 6, 20), dec2=(128, 12, 40), dec3=(64, 24, 80)))
    assert term.pairs == [("dec8", "dec2"), ("dec4", "dec2")]
    assert tuple(term.adapters["dec8"].weight.shape) == (128, 32, 1, 1)
    assert tuple(term.adapters["dec4"].weight.shape) == (128, 24, 1, 1)


def test_registry_holds_the_three_terms_and_parses_recipes():
    assert {"response", "feature", "affinity"} <= set(KD_TERMS)
    specs = parse_kd_terms([{"type": "response", "kind": "log_l1"}, {"type": "affinity", "weight": 10, "pool": "4x8"}])
    terms = build_kd_terms(specs)
    assert isinstance(terms[0], ResponseTerm) and terms[0].kind == "log_l1"
    assert isinstance(terms[1], AffinityTerm) and terms[1].pool == (4, 8) and specs[1].weight == 10.0


BAD_TERMS = [
    ({"type": "respons"}, "did you mean 'response'"),
    ({"type": "response", "kind": "l2"}, "kind must be one of"),
    ({"type": "response", "weight": -1}, "weight must be >= 0"),
    ({"type": "response", "weight": "high"}, "weight must be a finite number"),
    ({"type": "affinity", "pool": [0, 4]}, "affinity pool"),
    ({"type": "affinity", "pool": "big"}, "affinity pool"),
    ({"type": "affinity", "mask": "yes"}, "affinity mask"),
    ({"type": "feature", "levels": []}, "levels must be a non-empty list"),
    ({"type": "feature", "levels": [3]}, "levels must be a non-empty list"),
    ({"type": "feature", "layers": ["dec8"]}, "has no option .layers.; accepted: levels"),
    ("response", "must be a mapping"),
]


@pytest.mark.parametrize("entry,message", BAD_TERMS)
def test_bad_terms_are_one_line_config_errors(entry, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_kd_terms(parse_kd_terms([entry]))
    assert "\n" not in str(info.value)


@settings(max_examples=40, deadline=None)
@given(weight=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.text(max_size=3),
                        st.booleans(), st.none()))
def test_any_weight_is_accepted_or_refused_cleanly(weight):
    try:
        specs = parse_kd_terms([{"type": "response", "weight": weight}])
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert specs[0].weight >= 0 and math.isfinite(specs[0].weight)


def test_package_exports_resolve():
    import slimdepth.distill as distill

    assert all(getattr(distill, name) is not None for name in distill.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        distill.nope  # noqa: B018
