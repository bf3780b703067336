"""Worn asphalt (the ``road_wear`` scene option): wheel paths, repair patches, stains and a tint
change the road's albedo only; geometry, labels and every other frame stay as they were."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import ndimage

from slimdepth.data.synthetic import SceneGenerator
from slimdepth.data.synthetic import shading, textures
from slimdepth.data.synthetic.generator import generator_options
from slimdepth.data.synthetic.scene import ROAD, RoadWear, SceneOptions

SIZE = (64, 208)


class _FlatNoise:
    """Stands in for a shaded surface: every texture lookup returns ``value``."""

    def __init__(self, value: float) -> None:
        self.value = np.float32(value)

    def tex(self, name, sel, u, v, metres):  # noqa: ANN001 - the _Surface.tex signature
        return np.full(len(u), self.value, np.float32)


def _wear(**changes) -> RoadWear:
    base = dict(tracks=(1.0,), track_gain=0.8, track_width=0.6, patches=0.0, patch_gain=0.7, stains=0.0,
                tint=(1.0, 1.0, 1.0), seed=5)
    base.update(changes)
    return RoadWear(**base)


def test_wheel_paths_follow_a_parabola_across_each_track():
    x = np.linspace(0.0, 2.0, 201, dtype=np.float32)
    z = np.full_like(x, 7.0)
    f = shading._wear(_FlatNoise(0.5), _wear(), np.arange(len(x)), x, z)
    d = (x.astype(np.float64) - 1.0) / 0.3
    expected = np.where(np.abs(d) < 1.0, 1.0 - 0.2 * (1.0 - d * d), 1.0)
    np.testing.assert_allclose(f, expected, atol=1e-6)
    assert f.min() == pytest.approx(0.8, abs=1e-6) and f[0] == 1.0 and f[-1] == 1.0


def test_stains_scale_the_noise_around_one():
    x = np.zeros(3, np.float32)
    for noise, expected in ((0.5, 1.0), (1.0, 1.4), (0.0, 0.6)):
        f = shading._wear(_FlatNoise(noise), _wear(tracks=(), stains=0.4), np.arange(3), x, x)
        np.testing.assert_allclose(f, expected, rtol=1e-6)


def test_patches_fill_the_hashed_cells_with_rectangles():
    """Against a loop over the points with the cell rule written out: a cell holds a patch when
    its hash is below ``patches``; the patch spans [u0, u0 + 0.25 + 0.5 h3) x [v0, ...) of it."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-20, 20, 4000).astype(np.float32)
    z = rng.uniform(0, 90, 4000).astype(np.float32)
    wear = _wear(tracks=(), patches=0.4, patch_gain=0.6, seed=11)
    f = shading._wear(_FlatNoise(0.5), wear, np.arange(len(x)), x, z)
    expected = np.ones(len(x))
    for i in range(len(x)):
        fx, fz = float(np.float32(x[i] / np.float32(3.5))), float(np.float32(z[i] / np.float32(9.0)))
        cx, cz = int(np.floor(fx)), int(np.floor(fz))
        h = [float(textures.hash01(np.array([cx]), np.array([cz]), 11 + k)[0]) for k in range(5)]
        u0, v0 = h[1] * 0.5, h[2] * 0.5
        u, v = fx - cx, fz - cz
        if h[0] < 0.4 and u0 < u < u0 + 0.25 + 0.5 * h[3] and v0 < v < v0 + 0.25 + 0.5 * h[4]:
            expected[i] = 0.6
    np.testing.assert_allclose(f, expected, rtol=1e-6)
    assert 0.03 < (expected < 1).mean() < 0.4  # some points in patches, most not


def test_worn_frames_change_only_the_roads_colour():
    worn = SceneGenerator(SIZE, seed=3, components=("depth", "seg", "lidar"),
                          scene_options=SceneOptions(road_wear=1.0),
                          camera_options=generator_options({"camera": "off"})[1])
    plain = SceneGenerator(SIZE, seed=3, components=("depth", "seg", "lidar"),
                           camera_options=generator_options({"camera": "off"})[1])
    for i in range(3):
        a, b = worn.frame(i), plain.frame(i)
        assert a.scene.wear is not None and b.scene.wear is None
        for key in ("depth", "seg", "lidar"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        changed = np.any(a.rgb != b.rgb, axis=2)
        road = a.seg == ROAD
        assert changed[road].mean() > 0.5  # the tint alone moves most road pixels
        # the lens blur (3 x 3) spreads a change by one pixel at most, diagonals included
        assert not changed[~ndimage.binary_dilation(road, structure=np.ones((3, 3), bool))].any()


def test_without_wear_the_frames_are_the_defaults_bit_for_bit():
    """Wear is drawn last from the scene's stream, only when the frame is worn."""
    some = SceneGenerator(SIZE, seed=4, components=("depth",), scene_options=SceneOptions(road_wear=0.5))
    plain = SceneGenerator(SIZE, seed=4, components=("depth",))
    counts = {True: 0, False: 0}
    for i in range(10):
        a, b = some.frame(i), plain.frame(i)
        worn = a.scene.wear is not None
        counts[worn] += 1
        np.testing.assert_array_equal(a.depth, b.depth)
        assert np.array_equal(a.rgb, b.rgb) != worn
    assert counts[True] and counts[False]


def test_worn_frames_are_deterministic():
    a = SceneGenerator((48, 160), seed=0, scene_options=SceneOptions(road_wear=1.0)).frame(0)
    b = SceneGenerator((48, 160), seed=0, scene_options=SceneOptions(road_wear=1.0), threaded=False).frame(0)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    wear = a.scene.wear
    assert len(wear.tracks) % 2 == 0 and all(0.88 <= t <= 1.12 for t in wear.tint)
    # only IEEE basic operations and integer hashes: the same bits on every machine
    assert hashlib.sha256(a.rgb.tobytes()).hexdigest() == PINNED


PINNED = "b13ad9d73866bc26012bcd3d52e8a56a591d58f3dcae5f4f70b2870fdeb25617"
