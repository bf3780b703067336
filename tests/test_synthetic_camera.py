"""The synthetic camera model: the plain pipeline bit for bit, determinism, each effect's sign."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.data.synthetic.camera import (
    EFFECTS, MAX_STRENGTH, CameraOptions, CameraParams, develop, sample_camera,
)
from slimdepth.data.synthetic.textures import hash01
from slimdepth.errors import ConfigError

H, W = 48, 160


@lru_cache(maxsize=8)
def _reference_noise(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0 : height + 256, 0 : width + 256]
    planes = [hash01(xx, yy + 100003 * c, 71) + hash01(xx, yy + 100003 * c, 73) - 1.0 for c in range(3)]
    return (np.stack(planes) * 1.5).astype(np.float32)


def reference_to_uint8(radiance: np.ndarray, exposure: float, rng: np.random.Generator) -> np.ndarray:
    """The generator's original ``_to_uint8``, copied verbatim: what ``plain`` must reproduce."""
    c = radiance * np.float32(exposure)
    np.clip(c, np.float32(0.0), np.float32(1.0), out=c)
    np.sqrt(c, out=c)
    p = np.pad(c, ((0, 0), (1, 1), (1, 1)), mode="edge")
    q = np.float32(0.25) * (p[:, :, :-2] + p[:, :, 2:]) + np.float32(0.5) * p[:, :, 1:-1]
    c = np.float32(63.75) * (q[:, :-2] + q[:, 2:]) + np.float32(127.5) * q[:, 1:-1]  # blur, scale to 0..255
    _, h, w = c.shape
    oy, ox = (int(v) for v in rng.integers(0, 256, size=2))
    c += _reference_noise(h, w)[:, oy : oy + h, ox : ox + w]
    np.rint(c, out=c)
    np.clip(c, np.float32(0.0), np.float32(255.0), out=c)
    out = np.empty((h, w, 3), np.uint8)
    np.copyto(out, c.transpose(1, 2, 0), casting="unsafe")
    return out


def _radiance(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """A street-like test image: smooth gradients, texture, a dark band and a bright 'sky'."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.15 + 0.5 * (x / w) + 0.1 * rng.random((3, h, w), dtype=np.float32)
    base[:, : h // 4] = 1.1  # over-exposed sky
    base[:, h // 2 : h // 2 + 4] *= 0.05
    return base.astype(np.float32)


def _flat(value: float, h: int = H, w: int = W) -> np.ndarray:
    return np.full((3, h, w), value, np.float32)


def _dev(radiance: np.ndarray, params: CameraParams, seed: int = 1) -> np.ndarray:
    return develop(radiance, params, np.random.default_rng(seed)).astype(np.float64)


ALL_MAX = CameraOptions(**{e: MAX_STRENGTH for e in EFFECTS})
# parameters with every effect on, strong enough to see at 48x160
STRONG = CameraParams(exposure=1.0, wb_gains=(1.2, 1.0, 0.8), cast_gains=(1.0, 1.1, 1.0), cast_offset=(0.01, 0.0, 0.02),
                      vignette=0.5, bloom_threshold=0.6, bloom_strength=0.8, bloom_radius=2, blur_forward=6.0,
                      blur_shake=2.0, blur_angle=0.3, tone_mid=0.2, tone_contrast=0.2, noise_shot=2.0, noise_dark=4.0,
                      jpeg_quality=10)


def _params_with_every_effect(options: CameraOptions) -> tuple[int, CameraParams]:
    """The first seed whose draws apply every effect under ``options``."""
    for seed in range(2000):
        p = sample_camera(np.random.default_rng(seed), options, 1.0)
        if all(p != p.without(e) for e in EFFECTS):
            return seed, p
    raise AssertionError("no seed applies every effect")


# --- the plain pipeline and determinism -------------------------------------------------------
@pytest.mark.parametrize("size", [(H, W), (37, 101)])
def test_plain_is_the_original_pipeline_bit_for_bit(size):
    for seed in range(3):
        rad = _radiance(seed, *size)
        rng = np.random.default_rng(seed)
        params = sample_camera(rng, CameraOptions(plain=True), 1.07)
        assert rng.bit_generator.state == np.random.default_rng(seed).bit_generator.state  # no draws
        got = develop(rad, params, rng)
        ref = reference_to_uint8(rad, 1.07, np.random.default_rng(seed))
        assert np.array_equal(got, ref)
        # every strength at 0 runs the general code, with the same image
        off = sample_camera(np.random.default_rng(99), CameraOptions.off(), 1.07)
        assert np.array_equal(develop(rad, off, np.random.default_rng(seed)), ref)


def test_same_seed_same_bytes_other_seed_other_bytes():
    rad = _radiance()

    def frame(seed):
        rng = np.random.default_rng(seed)
        return develop(rad, sample_camera(rng, ALL_MAX, 1.0), rng)

    assert frame(3).tobytes() == frame(3).tobytes()
    assert frame(3).tobytes() != frame(4).tobytes()
    assert np.array_equal(_dev(rad, STRONG), _dev(rad, STRONG))


@pytest.mark.parametrize("size", [(H, W), (37, 101), (8, 8)])
def test_output_dtype_shape_range(size):
    for rad in (_radiance(0, *size), _flat(0.0, *size), _flat(50.0, *size)):
        out = develop(rad, STRONG, np.random.default_rng(0))
        assert out.dtype == np.uint8 and out.shape == (*size, 3)
    with pytest.raises(ValueError, match="3, H, W"):
        develop(np.zeros((H, W, 3), np.float32), STRONG, np.random.default_rng(0))


NEUTRAL = CameraParams(exposure=1.0)


# --- draws: fixed in number and order ---------------------------------------------------------
def test_draws_are_fixed_whatever_the_options():
    after = set()
    for opts in (CameraOptions(), CameraOptions.off(), ALL_MAX, CameraOptions(jpeg=0, noise=3.0)):
        rng = np.random.default_rng(7)
        sample_camera(rng, opts, 1.0)
        after.add(rng.random())
    assert len(after) == 1


@pytest.mark.parametrize("effect", EFFECTS)
def test_an_effect_at_zero_is_the_effect_left_out_and_leaves_the_others_draws(effect):
    seed, on = _params_with_every_effect(ALL_MAX)
    off = sample_camera(np.random.default_rng(seed), replace(ALL_MAX, **{effect: 0.0}), 1.0)
    assert off == on.without(effect)  # the other effects drew the same values
    rad = _radiance()
    assert np.array_equal(_dev(rad, off), _dev(rad, on.without(effect)))
    # and the effect does something (alone, so that no other effect can hide it)
    changed = {f.name for f in fields(CameraParams) if getattr(on, f.name) != getattr(on.without(effect), f.name)}
    alone = replace(NEUTRAL, **{name: getattr(on, name) for name in changed})
    assert not np.array_equal(_dev(rad, alone), _dev(rad, NEUTRAL))


def test_default_options_give_clean_and_degraded_frames():
    params = [sample_camera(np.random.default_rng(s), CameraOptions(), 1.0) for s in range(300)]
    for effect in ("bloom", "motion_blur", "jpeg", "noise", "vignetting"):
        applied = sum(p != p.without(effect) for p in params)
        assert 0 < applied < len(params), effect
    assert all(50 <= p.jpeg_quality <= 95 for p in params if p.jpeg_quality)
    assert all(0.7 < p.exposure < 1.4 for p in params)


# --- each effect does what it says ------------------------------------------------------------

def test_exposure_scales_the_mean():
    rad = _flat(0.2)
    dark, bright = _dev(rad, replace(NEUTRAL, exposure=0.5)), _dev(rad, NEUTRAL)
    assert dark.mean() / bright.mean() == pytest.approx(math.sqrt(0.5), rel=0.02)  # gamma 2


def test_white_balance_changes_channel_ratios():
    out = _dev(_flat(0.2), replace(NEUTRAL, wb_gains=(1.3, 1.0, 0.7)))
    r, g, b = out.reshape(-1, 3).mean(0)
    assert r / g == pytest.approx(math.sqrt(1.3), rel=0.03) and b / g == pytest.approx(math.sqrt(0.7), rel=0.03)


def test_color_cast_tints_and_lifts_blacks():
    out = _dev(_flat(0.0), replace(NEUTRAL, cast_offset=(0.0, 0.0, 0.004)))
    r, _, b = out.reshape(-1, 3).mean(0)
    assert b > r + 10


def test_vignetting_darkens_the_corners():
    out = _dev(_flat(0.25), replace(NEUTRAL, vignette=0.4))[..., 1]
    centre = out[H // 2 - 4 : H // 2 + 4, W // 2 - 4 : W // 2 + 4].mean()
    corners = np.mean([out[:4, :4].mean(), out[:4, -4:].mean(), out[-4:, :4].mean(), out[-4:, -4:].mean()])
    assert corners < 0.85 * centre
    assert _dev(_flat(0.25), NEUTRAL)[..., 1].std() < 1.0  # flat without it


def test_bloom_brightens_pixels_near_a_bright_spot():
    rad = _flat(0.02)
    rad[:, 20:28, 76:84] = 4.0
    params = replace(NEUTRAL, bloom_threshold=0.8, bloom_strength=0.5, bloom_radius=2)
    glow, plain = _dev(rad, params), _dev(rad, NEUTRAL)
    ring = np.zeros((H, W), bool)
    ring[12:36, 66:94] = True
    ring[18:30, 74:86] = False
    assert (glow - plain)[ring].mean() > 5
    assert np.abs(glow - plain)[:, :20].max() <= 1  # far away nothing changes (but the dither)


def _high_frequency(img: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(img, axis=1)).mean(axis=(0, 2))


def test_motion_blur_removes_high_frequencies_more_at_the_sides():
    y, x = np.mgrid[0:H, 0:W]
    rad = np.broadcast_to(np.where(((x // 2) + (y // 2)) % 2 == 0, 0.8, 0.1), (3, H, W)).astype(np.float32)
    sharp = _high_frequency(_dev(rad, NEUTRAL))
    blurred = _high_frequency(_dev(rad, replace(NEUTRAL, blur_forward=8.0)))
    assert blurred.sum() < 0.8 * sharp.sum()
    side, middle = slice(0, 20), slice(W // 2 - 10, W // 2 + 10)
    assert blurred[side].mean() / sharp[side].mean() < blurred[middle].mean() / sharp[middle].mean()
    shaken = _high_frequency(_dev(rad, replace(NEUTRAL, blur_shake=3.0, blur_angle=0.0)))
    assert shaken.sum() < 0.8 * sharp.sum()


def test_noise_raises_variance_more_in_the_dark():
    params = replace(NEUTRAL, noise_shot=1.0, noise_dark=4.0)
    for level in (0.02, 0.5):
        assert _dev(_flat(level), params).std() > 1.5 * _dev(_flat(level), NEUTRAL).std()
    assert _dev(_flat(0.02), params).std() > _dev(_flat(0.5), params).std()


def test_tone_curve_keeps_black_and_white_and_moves_mid_tones():
    for level, moves in ((0.0, False), (1.0, False), (0.2, True)):
        a = _dev(_flat(level), replace(NEUTRAL, tone_mid=0.3))
        b = _dev(_flat(level), NEUTRAL)
        assert (a.mean() - b.mean() > 5) == moves


def test_jpeg_at_low_quality_makes_8x8_blocks():
    y, x = np.mgrid[0:96, 0:320].astype(np.float32)
    rad = np.broadcast_to(((x + 0.7 * y) / 600.0) ** 2, (3, 96, 320)).astype(np.float32)  # a smooth ramp
    out = _dev(rad, replace(NEUTRAL, jpeg_quality=10))[..., 0]
    jumps = np.abs(np.diff(out, axis=1))  # jumps[:, j] is between columns j and j + 1
    across, within = jumps[:, 7::8].mean(), np.delete(jumps, np.s_[7::8], axis=1).mean()
    assert across > 2 * within
    plain = _dev(rad, NEUTRAL)[..., 0]
    plain_jumps = np.abs(np.diff(plain, axis=1))
    assert plain_jumps[:, 7::8].mean() < 1.5 * np.delete(plain_jumps, np.s_[7::8], axis=1).mean()
    # high quality stays close to the input
    assert np.abs(_dev(rad, replace(NEUTRAL, jpeg_quality=95)) - _dev(rad, NEUTRAL)).mean() < 2


def test_without_names_an_effect():
    assert STRONG.without("jpeg").jpeg_quality == 0
    with pytest.raises(ConfigError, match="unknown camera effect 'jpg'"):
        STRONG.without("jpg")


# --- options ----------------------------------------------------------------------------------
def test_options_from_dict():
    assert CameraOptions.from_dict(None) == CameraOptions()
    opts = CameraOptions.from_dict({"noise": 2, "jpeg": 0.0, "plain": False})
    assert opts.noise == 2.0 and isinstance(opts.noise, float) and opts.jpeg == 0.0
    assert CameraOptions.from_dict({"plain": True}).plain
    assert {f.name for f in fields(CameraOptions)} == {*EFFECTS, "plain"}


_BAD_VALUES = st.one_of(
    st.floats(max_value=-1e-9), st.floats(min_value=MAX_STRENGTH, exclude_min=True), st.just(math.nan),
    st.just(math.inf), st.just(-math.inf), st.text(max_size=5), st.none(), st.booleans(),
    st.lists(st.floats(0, 1), max_size=2),
)


@settings(max_examples=60, deadline=None)
@given(effect=st.sampled_from(EFFECTS), value=_BAD_VALUES)
def test_bad_option_values_are_config_errors(effect, value):
    with pytest.raises(ConfigError, match=f"camera option {effect} must be") as err:
        CameraOptions.from_dict({effect: value})
    assert "\n" not in str(err.value)


@settings(max_examples=30, deadline=None)
@given(key=st.text(min_size=1, max_size=12).filter(lambda k: k not in {f.name for f in fields(CameraOptions)}))
def test_unknown_options_are_config_errors(key):
    with pytest.raises(ConfigError, match="unknown camera option") as err:
        CameraOptions.from_dict({key: 1.0})
    assert "\n" not in str(err.value).replace(repr(key), "")


def test_plain_must_be_a_bool_and_misspellings_get_a_hint():
    with pytest.raises(ConfigError, match="plain must be true or false"):
        CameraOptions.from_dict({"plain": 1})
    with pytest.raises(ConfigError, match="did you mean 'vignetting'"):
        CameraOptions.from_dict({"vignette": 1.0})
