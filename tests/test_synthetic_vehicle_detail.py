"""Vehicle detail (the ``vehicle_detail`` scene option): grime, panel seams, rivets, lettering and a
striped tape on every vehicle surface (glass and tyres too). It changes the vehicles' colour only, sharpens near vehicles
the way real ones look, leaves distant ones their tone, and draws nothing from the scene's RNG."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from slimdepth.data.registry import build_dataset
from slimdepth.data.synthetic import SceneGenerator, textures
from slimdepth.data.synthetic.generator import generator_options
from slimdepth.data.synthetic.scene import CAR, SceneOptions

SIZE = (96, 320)
OFF = generator_options({"camera": "off"})[1]


def _pair(seed: int, strength: float = 1.0, **options):
    """The same scenes (every lane queued) with and without detail, through no camera effect."""
    comps = ("depth", "seg", "lidar")
    detailed = SceneGenerator(SIZE, seed=seed, components=comps, camera_options=OFF,
                              scene_options=SceneOptions(traffic=2.0, vehicle_detail=strength, **options))
    plain = SceneGenerator(SIZE, seed=seed, components=comps, camera_options=OFF,
                           scene_options=SceneOptions(traffic=2.0, **options))
    return detailed, plain


def _high_pass(rgb: np.ndarray) -> np.ndarray:
    """|image - its 3 x 3 mean| (grey): the fine detail a pixel carries."""
    grey = rgb.astype(np.float64).mean(axis=2)
    return np.abs(grey - ndimage.uniform_filter(grey, 3, mode="nearest"))


def test_the_livery_texture_averages_to_one_and_holds_every_feature():
    tex = textures.texture("livery")
    base = tex.data[: textures.SIZE**2].reshape(textures.SIZE, textures.SIZE)
    assert tex.data[-1] == pytest.approx(1.0, abs=1e-5)  # the coarsest mip: a far body keeps its paint
    assert base.mean() == pytest.approx(1.0, abs=1e-5) and base.min() > 0
    dark, bright = base < 0.3, base > 1.5
    assert 0.01 < dark.mean() < 0.1  # lettering strokes
    rows = np.arange(textures.SIZE)
    np.testing.assert_array_equal(bright.any(axis=1), (rows >= 110) & (rows < 114))  # the tape's rows alone
    # the lettering's cells divide the tile: no letter is cut where the texture wraps
    assert dark[:, :4].any() and not dark[:, -2:].any()


def test_detail_changes_only_the_vehicles_colour():
    for seed, options in ((1, {}), (7, {"slopes": 1.0, "bends": 1.0, "vehicles": "wheeled"})):
        detailed, plain = _pair(seed, **options)
        for i in range(3):
            a, b = detailed.frame(i), plain.frame(i)
            for key in ("depth", "seg", "lidar"):
                np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
            changed = np.any(a.rgb != b.rgb, axis=2)
            car = a.seg == CAR
            assert car.any() and changed[car].mean() > 0.5
            # the renderer's 3 x 3 lens blur spreads a change by one pixel at most, diagonals included
            assert not changed[~ndimage.binary_dilation(car, structure=np.ones((3, 3), bool))].any()


def test_near_vehicles_carry_more_fine_detail_and_far_ones_keep_their_tone():
    near_gain, far_ratio = [], []
    for seed in (2, 5):
        detailed, plain = _pair(seed)
        for i in range(4):
            a, b = detailed.frame(i), plain.frame(i)
            car = ndimage.binary_erosion(a.seg == CAR, np.ones((3, 3), bool))  # not the silhouette's edge
            near, far = car & (a.depth < 10), car & (a.depth > 40)
            if near.sum() > 200:
                near_gain.append(_high_pass(a.rgb)[near].mean() / _high_pass(b.rgb)[near].mean())
            if far.sum() > 50:
                far_ratio.append(a.rgb[far].astype(np.float64).mean() / b.rgb[far].astype(np.float64).mean())
    assert len(near_gain) >= 3 and len(far_ratio) >= 2
    # the smooth panels of the plain frames gain seams, letters and grime (1.08-1.47 here at 96 x 320,
    # where windows, wheels and lamps already carry the plain frames' detail)
    assert min(near_gain) > 1.05 and np.median(near_gain) > 1.15
    assert all(0.85 < r < 1.15 for r in far_ratio)  # averaged over a pixel, the texture is ~1


def test_strength_scales_the_change():
    weak, _ = _pair(3, strength=0.3)
    strong, plain = _pair(3, strength=1.0)
    a, b, c = weak.frame(0), strong.frame(0), plain.frame(0)
    car = a.seg == CAR
    d_weak = np.abs(a.rgb.astype(float) - c.rgb)[car].mean()
    d_strong = np.abs(b.rgb.astype(float) - c.rgb)[car].mean()
    assert 0 < d_weak < 0.5 * d_strong


def test_detail_on_wheeled_and_bent_scenes_and_determinism():
    opts = SceneOptions(vehicles="wheeled", bends=1.0, slopes=1.0, vehicle_detail=0.8)
    a = SceneGenerator((48, 160), seed=0, scene_options=opts).frame(0)
    b = SceneGenerator((48, 160), seed=0, scene_options=opts, threaded=False).frame(0)
    np.testing.assert_array_equal(a.rgb, b.rgb)


def test_the_spec_reads_the_option():
    ds = build_dataset("synthetic,num=1,size=32x96,vehicle_detail=0.5")
    assert ds.generator.scene_options.vehicle_detail == 0.5
    assert build_dataset("synthetic,num=1,size=32x96").generator.scene_options.vehicle_detail == 0.0
