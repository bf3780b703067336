"""Bad input as classes: random option values, sidecar fields, sizes and file corruptions.

Every case must end as a one-line ``error:`` with exit status 1 (or succeed, when the value
happens to be fine), never a traceback, never "a bug in slimdepth", and never with a file
changed. The single examples a reviewer found are pinned too, next to the class they belong to.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import atomic_path, write_depth, write_rgb, write_seg
from slimdepth.models.backbones.weights import load_state_dict_file
from slimdepth.models.checkpoint import save_model
from slimdepth.models.zoo import MODELS, build_model, list_models
from slimdepth.options import MAX_SIDE, parse_size
from tests.helpers import assert_one_line_error, run_cli

FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

#: values of every kind a YAML recipe or a hand-edited sidecar may hold; numbers that would be
#: valid are kept small so that an accepted one builds quickly
VALUES = st.one_of(
    st.none(), st.booleans(),
    st.integers(-10**12, 0), st.integers(1, 24), st.integers(MAX_SIDE + 1, 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12), st.sampled_from(["1e-3", "abc", "99999x99999", "0x5", "-3x4", "32x48", "none", "small"]),
    st.lists(st.integers(-5, 24), max_size=6), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_refused_or_fine(code: int, err: str) -> None:
    """Exit 0, or one line that is the input's fault (not 'a bug in slimdepth')."""
    if code == 0:
        return
    assert code == 1, err
    assert_one_line_error(code, err)
    assert "a bug in slimdepth" not in err, err


@given(text=st.one_of(st.sampled_from(["1e-3", "2E+4", "-1e5", "nan", "NaN", "inf", "-Infinity", "abc", "1e", "0x5", " 3 "]),
                      st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=8)))
def test_a_number_read_as_text_is_refused_in_one_line_with_a_hint_only_where_it_helps(text: str) -> None:
    """A recipe value YAML read as text: one line naming it; the '1.0e-3' hint exactly when the text
    is a finite number (``nan`` and ``inf`` parse as floats, but no spelling would make them valid)."""
    from slimdepth.options import check_number

    with pytest.raises(ConfigError) as info:
        check_number(text, "lambd", finite=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith("lambd must be a number, got ")
    try:
        finite = math.isfinite(float(text))
    except ValueError:
        finite = False
    assert ("write 1.0e-3" in message) == finite, message


# --------------------------------------------------------------------------------------------
# model options (recipes, --set, sidecars)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(data=st.data())
def test_any_model_option_value_builds_or_is_refused_in_one_line(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(list_models())))
    option = data.draw(st.sampled_from(sorted(MODELS.parameters(name))))
    value = data.draw(VALUES)
    try:
        model = build_model(name, **{option: value})
    except (ConfigError, DataError) as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert isinstance(model, torch.nn.Module)


@pytest.mark.parametrize("option,value,fragment", [
    ("width", -3, "litedepth width must be >= 2, got -3"),
    ("width", 10**9, "litedepth width must be <= 4096"),
    ("width", 2.5, "litedepth width must be an integer"),
    ("internal_size", "99999x99999", "each side must be at most 8192"),
    ("max_depth", float("nan"), "max_depth must be a finite number"),
    ("max_depth", 2.7e39, r"max_depth \(metres\) must be <= 100000"),  # found by the test above: float32 overflow
    ("variant", "huge", "variant must be one of large, small, small_minimal"),
])
def test_the_reviewers_model_options_are_refused_up_front(option: str, value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build_model("litedepth", **{option: value})


def test_tiny_multires_widths_are_checked_one_by_one() -> None:
    with pytest.raises(ConfigError, match=r"tiny-multires widths\[2\] must be >= 1, got 0"):
        build_model("tiny-multires", widths=[16, 24, 0, 64, 112])
    with pytest.raises(ConfigError, match="tiny-multires dec_widths must be a list of 4 channel widths"):
        build_model("tiny-multires", dec_widths=[64, 40])
    with pytest.raises(ConfigError, match="heads must be an integer, got True"):
        build_model("tiny-multires", heads=True)


# --------------------------------------------------------------------------------------------
# checkpoint sidecars


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    save_model(build_model("tiny-multires"), folder / "tiny.safetensors", metadata={"input_size": [32, 48]})
    return folder / "tiny.safetensors"


SIDECAR_FIELDS = st.sampled_from([
    ("model", "max_depth"), ("model", "heads"), ("model", "num_classes"), ("model", "widths"),
    ("model", "dec_widths"), ("model", "name"), ("model", "pruned_widths"), ("model", "gating"),
    ("model", "folded_normalization"), ("model", "unknown_option"), ("metadata", "input_size"),
    ("metadata",), ("model",), ("format",), ("format_version",),
])
LAYERS = st.sampled_from(["stem.0", "stem.1", "up.0.0.0", "up.0.0.1", "stages.0.0.block.0.0", "depth_heads.0",
                          "no.such.layer", ""])
WIDTH_SPECS = st.dictionaries(st.sampled_from(["type", "in_channels", "out_channels", "groups", "num_features"]),
                              st.one_of(st.integers(-4, 40), st.sampled_from(["Conv2d", "BatchNorm2d", "Linear", None])),
                              max_size=4)
FIELD_VALUES = st.one_of(
    VALUES,
    st.dictionaries(LAYERS, WIDTH_SPECS, max_size=3),
    st.fixed_dictionaries({"density": st.one_of(st.floats(-1, 2), VALUES)},
                          optional={"layers": st.one_of(LAYERS, st.lists(LAYERS, max_size=2), VALUES),
                                    "densities": st.one_of(st.dictionaries(LAYERS, st.floats(-1, 2), max_size=2), VALUES)}),
)


@settings(max_examples=50, deadline=None, suppress_health_check=FIXTURES)
@given(field=SIDECAR_FIELDS, value=FIELD_VALUES)
def test_any_sidecar_field_loads_or_is_refused_in_one_line(monkeypatch, capsys, checkpoint, tmp_path, field,
                                                            value) -> None:
    folder = tmp_path / "case"
    folder.mkdir(exist_ok=True)
    for suffix in (".safetensors", ".json"):
        (folder / f"c{suffix}").write_bytes(checkpoint.with_suffix(suffix).read_bytes())
    info = json.loads((folder / "c.json").read_text())
    target = info
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    (folder / "c.json").write_text(json.dumps(info, default=str))
    before = _snapshot(folder)
    code, _, err = run_cli(monkeypatch, capsys, "cost", str(folder / "c.safetensors"), "--runs", "1", "--warmup", "0")
    _assert_refused_or_fine(code, err)
    if code:
        assert str(folder / "c") in err, err  # names the checkpoint
    assert _snapshot(folder) == before


@pytest.mark.parametrize("size,fragment", [([0, 48], "must be positive"), ([99999, 99999], "at most 8192"),
                                           ("tall", "must be HxW")])
def test_a_bad_input_size_in_a_sidecar_names_the_file(monkeypatch, capsys, checkpoint, tmp_path, size, fragment) -> None:
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"c{suffix}").write_bytes(checkpoint.with_suffix(suffix).read_bytes())
    info = json.loads((tmp_path / "c.json").read_text())
    info["metadata"]["input_size"] = size
    (tmp_path / "c.json").write_text(json.dumps(info))
    code, _, err = run_cli(monkeypatch, capsys, "cost", str(tmp_path / "c.safetensors"), "--runs", "1")
    assert_one_line_error(code, err, f"{tmp_path / 'c.json'}: metadata.input_size", fragment)


def test_pruned_widths_that_do_not_fit_together_are_refused(monkeypatch, capsys, checkpoint, tmp_path) -> None:
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"c{suffix}").write_bytes(checkpoint.with_suffix(suffix).read_bytes())
    info = json.loads((tmp_path / "c.json").read_text())
    info["model"]["pruned_widths"] = {"stem.0": {"type": "Conv2d", "in_channels": 3, "out_channels": 8, "groups": 1}}
    (tmp_path / "c.json").write_text(json.dumps(info))  # stem.1 (its BatchNorm) still expects 16 channels
    code, _, err = run_cli(monkeypatch, capsys, "cost", str(tmp_path / "c.safetensors"), "--runs", "1")
    assert_one_line_error(code, err, "c.json: the model it describes cannot be built: pruned_widths do not fit together")
    info["model"]["pruned_widths"] = {"stem.0": {"type": "Conv2d", "in_channels": 3, "out_channels": 99, "groups": 1}}
    (tmp_path / "c.json").write_text(json.dumps(info))
    code, _, err = run_cli(monkeypatch, capsys, "cost", str(tmp_path / "c.safetensors"), "--runs", "1")
    assert_one_line_error(code, err, "pruned_widths['stem.0']: wider than the architecture (out_channels 99 > 16)")


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURES)
@given(cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 2**31), max_size=4), which=st.sampled_from(["weights", "sidecar"]))
def test_corrupt_checkpoint_files_are_one_line_errors(monkeypatch, capsys, checkpoint, tmp_path, cut, flips,
                                                      which) -> None:
    for suffix in (".safetensors", ".json"):
        (tmp_path / f"c{suffix}").write_bytes(checkpoint.with_suffix(suffix).read_bytes())
    path = tmp_path / ("c.safetensors" if which == "weights" else "c.json")
    data = bytearray(path.read_bytes())
    data = data[: int(len(data) * cut)]
    for f in flips:
        if data:
            data[f % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))
    before = _snapshot(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "cost", str(tmp_path / "c.safetensors"), "--runs", "1", "--warmup", "0")
    _assert_refused_or_fine(code, err)
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------------
# sizes


BAD_SIZES = st.one_of(
    st.tuples(st.integers(MAX_SIDE + 1, 10**9), st.integers(1, 10**9)).map(lambda t: f"{t[0]}x{t[1]}"),
    st.tuples(st.integers(1, 10**9), st.integers(MAX_SIDE + 1, 10**9)).map(lambda t: f"{t[0]}x{t[1]}"),
    st.tuples(st.integers(-10**6, 0), st.integers(-10**6, 10**6)).map(lambda t: f"{t[0]}x{t[1]}"),
    st.text(alphabet="0123456789x.-e ", min_size=1, max_size=10).filter(lambda s: not _fine_size(s)),
)


def _fine_size(text: str) -> bool:
    try:
        parse_size(text)
    except ConfigError:
        return False
    return True


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_rgb(folder / "a.png", np.zeros((24, 32, 3), np.uint8))
    return folder


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURES)
@given(size=BAD_SIZES, verb=st.sampled_from(["models", "cost", "evaluate", "predict", "compare"]))
def test_bad_sizes_are_refused_before_any_work(monkeypatch, capsys, checkpoint, image_folder, tmp_path, size,
                                               verb) -> None:
    out = tmp_path / "pred"
    args = {"models": ["models"], "cost": ["cost", "tiny-multires"],
            "evaluate": ["evaluate", str(checkpoint), "--data", "synthetic,num=1,size=32x48"],
            "predict": ["predict", str(checkpoint), str(image_folder), "--out", str(out)],
            "compare": ["compare", str(checkpoint), "--data", "synthetic,num=1,size=32x48"]}[verb]
    for where in ("slimdepth.loader.load_model", "slimdepth.compress.compare.load_model"):
        monkeypatch.setattr(where, lambda *a, **k: pytest.fail("a model was loaded"))
    code, _, err = run_cli(monkeypatch, capsys, *args, "--size", size)
    assert_one_line_error(code, err, "--size")
    assert code == 1 and not out.exists()


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURES)
@given(option=st.sampled_from(["--runs", "--warmup", "--threads"]),
       value=st.one_of(st.integers(-10**9, -1), st.integers(1025, 10**12), st.sampled_from(["0", "1.5", "x", ""])),
       verb=st.sampled_from(["cost", "compare"]))
def test_bad_timing_options_are_refused_before_any_work(monkeypatch, capsys, checkpoint, option, value, verb) -> None:
    """Every value here is out of range for its option (runs >= 1, warmup >= 0, threads 1..1024;
    torch.set_num_threads crashes the process on huge values): one line, before any model loads."""
    if option != "--threads" and isinstance(value, int) and value > 0:
        value = -value  # a large count of runs is merely slow, not wrong
    if option == "--warmup" and value == "0":
        value = "-1"
    args = ["cost", "tiny-multires"] if verb == "cost" else ["compare", str(checkpoint), "--data", "synthetic,num=1"]
    for where in ("slimdepth.loader.load_model", "slimdepth.compress.compare.load_model"):
        monkeypatch.setattr(where, lambda *a, **k: pytest.fail("a model was loaded"))
    code, _, err = run_cli(monkeypatch, capsys, *args, option, str(value))
    assert code in (1, 2) and "a bug in slimdepth" not in err
    assert_one_line_error(code, err, option)


def test_a_recipe_asking_for_absurd_threads_is_refused(monkeypatch, capsys, tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"name": "tiny-multires"}, "train": {"threads": 100000},
                                      "data": {"train": "synthetic,num=2,size=32x96", "val": None, "batch_size": 2}}))
    code, _, err = run_cli(monkeypatch, capsys, "train", str(recipe), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "'train.threads' must be <= 1024")


# --------------------------------------------------------------------------------------------
# prediction never lands on an input


def _labeled(root: Path) -> Path:
    for i in range(2):
        write_rgb(root / "rgb" / f"{i:06d}.png", np.full((24, 32, 3), 40 * i, np.uint8))
        write_depth(root / "depth" / f"{i:06d}.png", np.full((24, 32), 5.0, np.float32), "kitti")
        write_seg(root / "seg" / f"{i:06d}.png", np.zeros((24, 32), np.uint8))
    (root / "meta.json").write_text(json.dumps({"depth_encoding": "kitti"}))
    return root


@pytest.fixture
def labeled(tmp_path) -> Path:
    return _labeled(tmp_path / "ds")


SCANNED = ("rgb", "depth", "seg")  # the folders the folder reader indexes


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURES)
@given(parts=st.lists(st.sampled_from(["rgb", "depth", "seg", "pred", "..", "."]), min_size=0, max_size=3),
       overwrite=st.booleans())
def test_predict_never_writes_where_the_dataset_reads(monkeypatch, capsys, checkpoint, tmp_path, parts,
                                                      overwrite) -> None:
    root = tmp_path / "a" / "b" / "c" / "ds"  # deep enough for three '..'
    if not root.exists():
        _labeled(root)
    out = root.joinpath(*parts) if parts else root
    where = out.resolve()
    inside = where.relative_to(root.resolve()).parts if where.is_relative_to(root.resolve()) else ()
    scanned = bool(inside) and inside[0] in SCANNED
    before = _snapshot(root)
    args = ["predict", str(checkpoint), "--data", str(root), "--out", str(out)]
    code, _, err = run_cli(monkeypatch, capsys, *args, *(["--overwrite"] if overwrite else []))
    if scanned:
        assert_one_line_error(code, err, "a folder of the dataset")
    else:
        assert code == 0 or "already exists" in err, err
    assert {k: v for k, v in _snapshot(root).items() if k in before} == before  # no input changed
    assert all(not k.startswith(SCANNED) or k in before for k in _snapshot(root))  # nothing added where it reads


def test_overwrite_replaces_predictions_never_a_folders_own_files(monkeypatch, capsys, checkpoint, labeled) -> None:
    """Images as inputs, --out a dataset's depth folder: its NAME.png files are ground truth, not
    earlier predictions (no NAME.npy and NAME_vis.png beside them), so --overwrite leaves them."""
    before = _snapshot(labeled)
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(checkpoint), str(labeled / "rgb"), "--out",
                           str(labeled / "depth"), "--overwrite")
    assert_one_line_error(code, err, f"{labeled / 'depth' / '000000.png'}: already exists and is not an earlier prediction")
    assert _snapshot(labeled) == before
    out = labeled.parent / "pred"
    for _ in range(2):  # a second run replaces the first one's files
        code, _, err = run_cli(monkeypatch, capsys, "predict", str(checkpoint), str(labeled / "rgb"), "--out", str(out),
                               "--overwrite")
        assert code == 0, err


def test_a_line_break_in_a_value_stays_on_one_line(monkeypatch, capsys, tmp_path) -> None:
    weird = tmp_path / "two\nlines.pth"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"name": "litedepth", "encoder_weights": str(weird)},
                                      "data": {"train": "synthetic,num=2,size=32x96", "val": None, "batch_size": 2}}))
    code, _, err = run_cli(monkeypatch, capsys, "train", str(recipe), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, "two\\nlines.pth")


def test_input_messages_name_the_folders_and_files(monkeypatch, capsys, checkpoint, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(checkpoint), str(empty), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, f"no input images found in {empty}")
    for folder in ("a", "b"):
        write_rgb(tmp_path / folder / "x.png", np.zeros((8, 8, 3), np.uint8))
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(checkpoint), str(tmp_path / "a"), str(tmp_path / "b"),
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, f"{tmp_path / 'a' / 'x.png'} and {tmp_path / 'b' / 'x.png'} share the file name 'x'")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------
# outputs that cannot be written


def test_an_unwritable_json_folder_is_refused_before_the_work(monkeypatch, capsys, checkpoint) -> None:
    calls = []
    for where in ("slimdepth.loader.load_model", "slimdepth.compress.compare.load_model"):
        monkeypatch.setattr(where, lambda *a, **k: calls.append(a))
    for verb in (["evaluate", str(checkpoint), "--data", "synthetic,num=1"],
                 ["compare", str(checkpoint), "--data", "synthetic,num=1"], ["cost", "tiny-multires"]):
        code, _, err = run_cli(monkeypatch, capsys, *verb, "--json", "/proc/slimdepth-report.json")
        assert_one_line_error(code, err, "/proc/slimdepth-report.json: cannot write into /proc")
    assert calls == []  # refused before any model was loaded


def test_a_failed_atomic_write_names_the_file_asked_for(tmp_path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        tmp.write_text("x")
    assert info.value.filename == str(target)
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temporary file left behind


def test_an_old_style_pickle_as_encoder_weights_prints_no_warnings(tmp_path) -> None:
    """torch warns about old pickle protocols on stderr; the user should see one line, whatever the outcome."""
    legacy, plain = tmp_path / "legacy.pth", tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with open(plain, "wb") as f:
        pickle.dump({"w": [0.0, 0.0]}, f, protocol=4)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert torch.equal(load_state_dict_file(legacy)["w"], torch.zeros(2))
        with pytest.raises(DataError, match="plain.pth: unreadable weights file"):
            load_state_dict_file(plain)
    assert [str(w.message) for w in seen] == []


# --------------------------------------------------------------------------------------------
# data loader workers


@pytest.mark.parametrize("corruption", [b"", b"not an image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"])
def test_a_corrupt_file_read_in_a_worker_is_one_line(monkeypatch, capsys, labeled, tmp_path, corruption) -> None:
    (labeled / "rgb" / "000001.png").write_bytes(corruption)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"name": "tiny-multires", "heads": 1}, "schedule": {"warmup_steps": 0},
        "data": {"train": str(labeled), "val": None, "size": "24x32", "workers": 1, "batch_size": 2},
        "train": {"steps": 2}}))
    code, _, err = run_cli(monkeypatch, capsys, "train", str(recipe), "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, f"{labeled / 'rgb' / '000001.png'}: cannot read image")
    assert "DataLoader worker" not in err
