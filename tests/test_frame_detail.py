"""benchmarks/frame_detail.py: the fine-detail energy of frames at a network's input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from tests.helpers import load_script
from tests.test_sim_to_real import _one_line

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "frame_detail.py"


def _script():
    return load_script(SCRIPT, "frame_detail_script")


def test_detail_energy_against_scipy_and_known_answers():
    script = _script()
    rng = np.random.default_rng(0)
    image = rng.random((3, 24, 40)).astype(np.float32)
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).astype(np.float64)
    expected = [np.abs(grey - ndimage.gaussian_filter(grey, s, mode="mirror", truncate=3.0)).mean() for s in (1.0, 3.0)]
    np.testing.assert_allclose(script.detail_energy(torch.from_numpy(image)), expected, rtol=1e-5)
    assert script.detail_energy(torch.full((3, 10, 12), 0.4)) == pytest.approx((0.0, 0.0), abs=1e-7)
    # doubling an image's contrast about mid-grey (inside [0, 1]) doubles both figures
    half = torch.from_numpy(0.5 + 0.25 * (image - 0.5))
    e1, e3 = script.detail_energy(half)
    d1, d3 = script.detail_energy(torch.from_numpy(0.5 + 2 * (half.numpy() - 0.5)))
    assert d1 == pytest.approx(2 * e1, rel=1e-4) and d3 == pytest.approx(2 * e3, rel=1e-4) and e3 > e1 > 0


def test_the_table_measures_rendered_and_sharpened_frames(capsys):
    script = _script()
    spec = "synthetic,num=3,size=48x160,lidar=false,seg=false"
    assert script.main(["--synthetic", spec, "--size", "48x160", "--frames", "2", "--sharpen", "3,2",
                        "--real", str(SCRIPT.parent)]) == 2  # not a KITTI folder: one line, nothing measured
    _one_line(capsys.readouterr().err)
    assert script.main(["--synthetic", spec, "--size", "48x160", "--frames", "2", "--sharpen", "3,2",
                        "--sharpen", "0,1"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("synthetic")]
    assert len(rows) == 3
    n, e1, e3, r1, r3 = (float(v) for v in rows[0].replace("|", " ").split()[1:])
    assert n == 2 and e1 > 0 and r1 == r3 == 1.0
    sharpened = [float(v) for v in rows[1].replace("|", " ").split()[-2:]]
    assert sharpened[0] > 2.0 and sharpened[1] > 1.5  # amount 3 at sigma 2: far more detail
    assert [float(v) for v in rows[2].replace("|", " ").split()[-2:]] == [1.0, 1.0]  # amount 0 changes nothing


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.text(max_size=6), st.sampled_from(["3", "3,", ",2", "a,b", "-1,2", "3,0", "3,21", "3,2,1",
                                                          "nan,2", "3,inf", "21,1"])))
def test_bad_sharpen_and_sizes_are_one_line_errors(text):
    script = _script()
    if text.count(",") == 1:
        try:
            amount, sigma = (float(v) for v in text.split(","))
            if 0 <= amount <= 20 and 0 < sigma <= 20:
                return  # a good value: measured elsewhere
        except ValueError:
            pass
    with pytest.raises(script.ConfigError) as err:
        script._parse_sharpen(text)
    assert "--sharpen" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("argv", [["--size", "0x320"], ["--size", "tall"], ["--frames", "0"],
                                  ["--synthetic", "synthetic,num=2,colour=red"]])
def test_bad_options_exit_2_with_one_line(argv, capsys):
    assert _script().main(argv) == 2
    _one_line(capsys.readouterr().err)


def test_detail_by_depth_against_scipy_at_the_points_in_each_band():
    script = _script()
    rng = np.random.default_rng(1)
    image = np.full((3, 24, 40), 0.5, np.float32)
    image[:, :, 20:] = 0.25 + 0.5 * rng.random((3, 24, 20))  # detail on the right half only
    rows = torch.tensor([5, 10, 15, 5, 12])
    cols = torch.tensor([3, 6, 9, 30, 33])
    depth = torch.tensor([4.0, 6.0, 7.9, 20.0, 29.9])  # the left points within 8 m, the right ones at 15-30 m
    frame = script.Frame(torch.from_numpy(image), None, (rows, cols, depth))
    bands = script.measure_by_depth([frame])
    grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).astype(np.float64)
    detail = np.abs(grey - ndimage.gaussian_filter(grey, 3.0, mode="mirror", truncate=3.0))
    assert bands[0] == pytest.approx(detail[[5, 10, 15], [3, 6, 9]].mean(), abs=1e-6)  # flat there: ~0
    assert bands[2] == pytest.approx(detail[[5, 12], [30, 33]].mean(), rel=1e-4)
    assert bands[2] > 5 * bands[0] and np.isnan(bands[1]) and np.isnan(bands[3])  # no points: NaN


def test_the_depth_table_shows_sharpen_far_raising_the_far_bands(capsys):
    script = _script()
    spec = "synthetic,num=3,size=96x320,lidar=false,seg=false,haze=0"
    assert script.main(["--synthetic", spec, "--frames", "3", "--sharpen", "3,2", "--sharpen-far", "3,2",
                        "--sharpen-far", "0,1", "--by-depth", "--real", str(SCRIPT.parent)]) == 2
    _one_line(capsys.readouterr().err)  # not a KITTI folder: nothing measured
    assert script.main(["--synthetic", spec, "--frames", "3", "--sharpen", "3,2", "--sharpen-far", "3,2",
                        "--sharpen-far", "0,1", "--by-depth"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("E3 at the points above the road"):].splitlines()
    ratio = {line.split("|")[0].strip(): float(line.split("|")[-1]) for line in table if line.startswith("synthetic")}
    plain, sharp = ratio[spec], ratio[f"{spec} + sharpen 3,2"]
    assert 0.7 < plain < 1.4 and abs(sharp - plain) < 0.25  # rendered frames are flat, sharpen keeps them so
    assert ratio[f"{spec} + sharpen_far 3,2"] > plain + 0.5  # the far gains, the near does not
    assert ratio[f"{spec} + sharpen_far 0,1"] == pytest.approx(plain, abs=1e-3)  # amount 0 changes nothing


@pytest.mark.parametrize("text", ["3", "a,b", "-1,2", "3,0", "21,1"])
def test_bad_sharpen_far_is_a_one_line_error_naming_its_option(text, capsys):
    assert _script().main([f"--sharpen-far={text}"]) == 2
    err = capsys.readouterr().err
    _one_line(err)
    assert "--sharpen-far" in err


def test_points_and_dense_depth_land_on_their_pixels_at_the_input_size():
    """A frame at 2x the input size: each point above the road moves to the input pixel that
    holds its centre, and the dense depth is resized centre-aligned (as the training resize)."""
    from slimdepth.data.sample import make_sample
    from slimdepth.geometry import kitti_like_intrinsics

    script = _script()
    h, w = 20, 40
    depth = np.zeros((h, w), np.float32)
    depth[3, 5], depth[7, 31], depth[9, 39] = 6.0, 20.0, 40.0  # above the horizon: above the road
    depth[:, :] = np.where(depth > 0, depth, 50.0)  # dense: everything else far
    frames = [make_sample(np.random.default_rng(0).random((h, w, 3)).astype(np.float32), depth=depth,
                          K=kitti_like_intrinsics(h, w))]
    (frame,) = script.inputs(frames, (10, 20), 1)
    rows, cols, d = frame.points
    found = {(int(r), int(c), float(v)) for r, c, v in zip(rows, cols, d) if v < 50}
    assert found == {(1, 2, 6.0), (3, 15, 20.0), (4, 19, 40.0)}
    # centre-aligned nearest: output pixel i holds input pixel 2i + 1 (legacy "nearest" takes 2i)
    np.testing.assert_array_equal(frame.depth.numpy(), depth[1::2, 1::2])
    assert frame.depth[1, 2] == 6.0 and frame.depth[3, 15] == 20.0 and frame.depth[4, 19] == 40.0
    np.testing.assert_array_equal(frame.image.numpy(), script.input_batch([frames[0]["image"]], (10, 20))[0].numpy())
