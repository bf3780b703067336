"""The generator's compiled (numba) loops against NumPy and brute-force references.

The pinned frame hashes in test_synthetic.py check that the compiled code gives the bits the
NumPy code gave; these tests check the pieces on their own, over whole classes of input:
NumPy's float rules (NaN and infinities; which zero comes out of a tie of -0 and +0 is not
checked, as it cannot reach a frame), every texture at every mip level, and the ray caster's
windows and culling against every primitive tested on every ray (the same hit tests, without
windows or culls). The package's kernel cache is stamped with all of its source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.data.synthetic import SceneGenerator, shading, textures
from slimdepth.data.synthetic.fmath import fmax, fmin, fmod
from slimdepth.data.synthetic.raycast import PinholeGrid, _ground, cast, hit_distances
from slimdepth.data.synthetic.scene import PID_SKY, SceneOptions

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, 3.0e38, -3.0e38, 1e-45, np.inf, -np.inf, np.nan]
floats32 = st.one_of(st.sampled_from(SPECIAL), st.floats(width=32, allow_nan=True, allow_infinity=True))


def _same(a: np.floating, b: np.floating) -> bool:
    """Equal values (-0.0 == 0.0: which zero comes out does not reach a frame), NaN with NaN."""
    return bool((np.isnan(a) and np.isnan(b)) or a == b)


@given(floats32, floats32)
@settings(max_examples=300, deadline=None)
def test_fmin_fmax_follow_numpy_including_nan(a, b):
    x, y = np.float32(a), np.float32(b)
    assert _same(fmin(x, y), np.minimum(x, y))
    assert _same(fmax(x, y), np.maximum(x, y))


@given(st.floats(-1e6, 1e6, width=32), st.floats(0.25, 100.0, width=32))
@settings(max_examples=300, deadline=None)
def test_fmod_is_the_shading_mod_bit_for_bit(a, period):
    x, p = np.float32(a), np.float32(period)
    got, want = fmod(x, p), shading._mod(np.array([x]), p)[0]
    assert np.float32(got).tobytes() == np.float32(want).tobytes()


@pytest.mark.parametrize("name", textures.NAMES)
def test_texel_is_mip_texture_sample_at_every_level(name):
    rng = np.random.default_rng(list(textures.NAMES).index(name))
    n = 4000
    u = rng.normal(0, 2000, n).astype(np.float32)
    v = rng.normal(0, 2000, n).astype(np.float32)
    fp = np.exp2(rng.uniform(-4, 11, n)).astype(np.float32)  # below 1 texel up to beyond the coarsest level
    fp[:9] = np.exp2(np.arange(9)).astype(np.float32)  # exactly on each level's boundary
    fp[9:12] = [np.inf, np.nan, 0.0]  # NumPy's frexp gives exponent 0: level -1, the 1x1 level
    data, starts = textures.atlas()
    want = textures.texture(name).sample(u, v, fp)
    got = np.array([textures.texel(data, starts, textures.TEX[name], u[i], v[i], fp[i]) for i in range(n)], np.float32)
    np.testing.assert_array_equal(got, want)
    levels = np.minimum(np.frexp(np.maximum(fp, 1.0))[1] - 1, starts.shape[1] - 1)
    assert set(levels.tolist()) == set(range(-1, starts.shape[1]))  # every level was sampled


def test_surface_tex_is_the_numpy_sample():
    gen = SceneGenerator((48, 160), seed=5, components=("depth",))
    scene = gen.scene(0)
    grid = PinholeGrid(scene.K, *gen.size, scene.camera_rotation, scene.camera_origin)
    surf = shading._Surface(scene, grid, cast(scene, grid))
    shading._normals(surf)
    surf.finish_normals()
    sel = np.arange(0, len(surf.idx), 3)
    u, v = surf.p[0].take(sel), surf.p[2].take(sel)
    k = np.float32(textures.SIZE / 2.5)
    want = textures.texture("bricks").sample(u * k, v * k, surf.fp.take(sel) * k)
    np.testing.assert_array_equal(surf.tex("bricks", sel, u, v, 2.5), want)


@pytest.mark.parametrize("options", [{}, {"traffic": 2.0, "layouts": "highway"}, {"slopes": 1.0, "bends": 1.0}],
                         ids=["default", "dense-highway", "hills-and-bends"])
def test_cast_is_the_nearest_of_every_primitive_on_every_ray(options):
    """Windows and both culls (whole primitives, single rays) only skip work: the caster's hits
    equal the nearest of the ground and of every primitive tested on the whole image."""
    gen = SceneGenerator((40, 128), seed=9, components=(), scene_options=SceneOptions(**options))
    for i in range(3):
        scene = gen.scene(i)
        grid = PinholeGrid(scene.K, *gen.size, scene.camera_rotation, scene.camera_origin)
        hits = cast(scene, grid)
        ground = _ground(scene, grid)
        t, pid = ground.t.copy(), ground.pid.copy()
        own = {}  # each primitive's distances on the whole image
        with np.errstate(divide="ignore", invalid="ignore"):
            for k in range(len(scene.prims)):
                own[k] = tk = hit_distances(scene.prims, k, grid)
                closer = tk < t
                t[closer], pid[closer] = tk[closer], k
        np.testing.assert_array_equal(hits.t, t)
        # where two primitives are hit at the same distance the caster keeps the one it tested
        # first (front to back), the reference the lower index: either is right
        for r, c in zip(*np.nonzero(hits.pid != pid)):
            assert hits.pid[r, c] >= 0 and pid[r, c] >= 0 and own[hits.pid[r, c]][r, c] == t[r, c]
        assert (pid >= 0).sum() > 100 and (pid == PID_SKY).any()


def test_kernels_are_cached_under_a_stamp_of_the_whole_package(tmp_path):
    """numba's own stamp is the defining file alone: an edit of fmath or textures would leave
    the cached shading kernels that call them running old code. The package's locator stamps
    every kernel with a hash of all of the package's source instead."""
    import shutil

    from slimdepth.data.synthetic import fmath, raycast

    for fn in (shading._light, shading._facade_colors, raycast._cast_primitives, textures.texel, fmin):
        locator = fn._cache._impl.locator
        assert type(locator).__name__ == "PackageLocator"
        assert locator.get_source_stamp() == fmath.package_stamp()
    here = Path(fmath.__file__).parent
    copy = tmp_path / "synthetic"
    shutil.copytree(here, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert fmath.source_hash(str(copy)) == fmath.package_stamp()
    (copy / "textures.py").write_text((copy / "textures.py").read_text() + "# an edit\n")
    assert fmath.source_hash(str(copy)) != fmath.package_stamp()


def test_the_kernel_cache_falls_back_to_the_first_writable_place(tmp_path, monkeypatch):
    """A read-only install (no writable __pycache__) must not fail at import: the locator takes
    the next writable place, and gives way to numba's own locators when there is none."""
    from slimdepth.data.synthetic import fmath

    locator_class = type(shading._light._cache._impl.locator)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    usable = tmp_path / "cache"
    monkeypatch.setattr(fmath, "_cache_dirs", lambda: [str(blocker / "sub"), str(usable)])
    locator = locator_class.from_function(shading._light.py_func, shading.__file__)
    assert locator.get_cache_path() == str(usable) and usable.is_dir()
    monkeypatch.setattr(fmath, "_cache_dirs", lambda: [str(blocker / "sub")])
    assert locator_class.from_function(shading._light.py_func, shading.__file__) is None
    # functions outside the package keep numba's own caching
    assert locator_class.from_function(test_fmod_is_the_shading_mod_bit_for_bit, __file__) is None
