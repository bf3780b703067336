"""The torch-free predictor: no torch imported, the same depth and files as the PyTorch path,
numpy resizing equal to torch's, shipped colour tables equal to matplotlib's, bad model files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from slimdepth.colormap import apply_colormap, colormap_table
from slimdepth.deploy.export import ExportSettings, export_model
from slimdepth.errors import DataError
from slimdepth.evaluate.loop import predict_depth
from slimdepth.fileio import read_depth, write_rgb
from slimdepth.models import build_model
from slimdepth.runtime import DepthPredictor, resize_bilinear
from tests.helpers import assert_one_line_error, run_cli

SIZE = (64, 128)
ROOT = Path(__file__).resolve().parents[1]
#: run first in a subprocess: any import of torch (or matplotlib) fails
BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "matplotlib"):
                raise ImportError("blocked for this test: " + name)
    sys.meta_path.insert(0, _Block())
""")
#: what the documented device install adds to ``pip install --no-deps .``: import name -> pip name
DEVICE_PACKAGES = {"numpy": "numpy", "PIL": "pillow", "onnxruntime": "onnxruntime", "typer": "typer", "rich": "rich"}
#: what slimdepth's own modules may import on a device: those, the standard library, and click (which
#: the CLI tries for older typers' usage errors)
DEVICE_IMPORTS = {*DEVICE_PACKAGES, "click", "slimdepth"}
#: run first too: record the top-level name of every import made by a slimdepth module (whoever
#: made it first: `builtins.__import__` sees an import even when the module is already loaded)
RECORD_IMPORTS = textwrap.dedent("""
    import builtins
    _imported_by_slimdepth = {}
    _real_import = builtins.__import__
    def _recording_import(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__", "")
        if level == 0 and importer.split(".")[0] == "slimdepth":
            _imported_by_slimdepth.setdefault(name.split(".")[0], importer)
        return _real_import(name, globals, locals, fromlist, level)
    builtins.__import__ = _recording_import
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A fixed-size export, the model it came from, and three images of another size."""
    root = tmp_path_factory.mktemp("rt")
    torch.manual_seed(0)
    model = build_model("litedepth-released", upsample="bilinear").eval()
    path = root / "m.onnx"
    export_model(model, path, ExportSettings("onnx", SIZE))
    from slimdepth.data.registry import build_dataset

    images = []
    for i, sample in enumerate(build_dataset("synthetic,num=3,size=75x150")):
        images.append(root / "imgs" / f"f{i}.png")
        images[-1].parent.mkdir(exist_ok=True)
        write_rgb(images[-1], (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return path, model, images


def _torch_prediction(model, image_path: Path) -> np.ndarray:
    from slimdepth.fileio import read_rgb

    image = torch.from_numpy(read_rgb(image_path).transpose(2, 0, 1).astype(np.float32) / 255.0)
    with torch.inference_mode():
        return predict_depth(model, [image], SIZE)[0][0].numpy()


def test_the_predictor_runs_where_torch_cannot_be_imported_and_matches_pytorch(exported, tmp_path) -> None:
    path, model, images = exported
    script = BLOCK_TORCH + textwrap.dedent(f"""
        import numpy as np
        from slimdepth.runtime import DepthPredictor
        predictor = DepthPredictor({str(path)!r})
        np.save({str(tmp_path / "d.npy")!r}, predictor.predict({str(images[0])!r}))
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "matplotlib")]
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    got = np.load(tmp_path / "d.npy")
    want = _torch_prediction(model, images[0])
    assert got.shape == want.shape == (75, 150)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_predict_cli_on_an_onnx_file_needs_no_torch_and_writes_the_pytorch_paths_files(exported, tmp_path,
                                                                                        monkeypatch, capsys) -> None:
    path, model, images = exported
    onnx_out, torch_out = tmp_path / "onnx", tmp_path / "torch"
    imports = tmp_path / "imports.json"
    script = BLOCK_TORCH + RECORD_IMPORTS + textwrap.dedent(f"""
        import json
        from slimdepth.cli import main
        sys.argv = ["slimdepth", "predict", {str(path)!r}, {str(images[0].parent)!r}, "--out", {str(onnx_out)!r},
                    "--ply", "--intrinsics", "100,100,75,37.5"]
        try:
            main()
        finally:
            with open({str(imports)!r}, "w") as handle:
                json.dump(_imported_by_slimdepth, handle)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    # the documented device install is enough: slimdepth itself imports nothing else
    found = json.loads(imports.read_text())
    assert {"numpy", "PIL", "onnxruntime", "typer", "rich"} <= set(found)  # the recorder sees them
    extra = {name: importer for name, importer in found.items()
             if name not in DEVICE_IMPORTS and name not in sys.stdlib_module_names}
    assert extra == {}, f"imported on the torch-free predict path, not in the device install: {extra}"
    ckpt = tmp_path / "ck"
    from slimdepth.models import save_model

    save_model(model, ckpt, metadata={"input_size": list(SIZE)})
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(ckpt.with_suffix(".safetensors")), str(images[0].parent),
                           "--out", str(torch_out), "--ply", "--intrinsics", "100,100,75,37.5")
    assert code == 0, err
    assert sorted(p.name for p in onnx_out.iterdir()) == sorted(p.name for p in torch_out.iterdir())
    for image in images:
        a, b = np.load(onnx_out / f"{image.stem}.npy"), np.load(torch_out / f"{image.stem}.npy")
        assert np.abs(a - b).max() <= 1e-4 * b.max()
        png_a, png_b = read_depth(onnx_out / f"{image.stem}.png", "mm"), read_depth(torch_out / f"{image.stem}.png", "mm")
        assert np.abs(png_a - png_b).max() <= 0.0011  # the same millimetres, give or take one rounding
        vis_a = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(onnx_out / f"{image.stem}_vis.png"))
        vis_b = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(torch_out / f"{image.stem}_vis.png"))
        # the same picture: pixels whose depth sits on a colour-bin edge may take the neighbouring entry
        assert (vis_a == vis_b).all(axis=-1).mean() > 0.95
        assert np.abs(vis_a.astype(int) - vis_b).max() <= 8


@pytest.mark.parametrize("doc", ["README.md", "docs/deployment.md", "src/slimdepth/runtime/__init__.py"])
def test_the_documented_device_install_names_every_package_the_predict_path_imports(doc) -> None:
    text = (ROOT / doc).read_text()
    assert "python -m pip install --no-deps ." in text
    assert f"python -m pip install {' '.join(DEVICE_PACKAGES.values())}" in text


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.floats(0.01, 100.0))
def test_numpy_bilinear_resize_equals_torchs(h, w, out_h, out_w, scale) -> None:
    x = (np.random.default_rng(h * 41 + w).random((2, 3, h, w)) * scale).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x), size=(out_h, out_w), mode="bilinear", align_corners=False).numpy()
    assert np.abs(resize_bilinear(x, (out_h, out_w)) - want).max() <= 2e-6 * scale


@pytest.mark.parametrize("name", ["magma", "inferno", "plasma", "viridis", "cividis", "gray", "magma_r"])
def test_shipped_colour_tables_equal_matplotlibs(name) -> None:
    cmap = matplotlib.colormaps[name]
    np.testing.assert_array_equal(colormap_table(name), cmap(np.arange(cmap.N), bytes=True)[:, :3])
    t = np.concatenate([np.linspace(0, 1, 1001), [0.0, 1.0, 0.5, 255.5 / 256, 1 / 256]])
    np.testing.assert_array_equal(apply_colormap(t, name), cmap(t, bytes=True)[..., :3])


CORRUPTIONS = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 3],
    "text": lambda data: b"this is not a model\n" * 10,
    "flipped header": lambda data: bytes([data[0] ^ 0xFF]) + data[1:16] + b"\x00" * 64,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_corrupt_onnx_file_is_a_one_line_error_everywhere(exported, tmp_path, monkeypatch, capsys, corruption) -> None:
    path, _, images = exported
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    with pytest.raises(DataError, match="bad.onnx"):
        DepthPredictor(bad)
    for args in (["predict", str(bad), str(images[0]), "--out", str(tmp_path / "out")],
                 ["evaluate", str(bad), "--data", "synthetic,num=1,size=64x128"],
                 ["bench", str(bad), "--runtime", "ort", "--size", "64x128", "--runs", "1", "--warmup", "0"]):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert_one_line_error(code, err, "bad.onnx")
    assert not (tmp_path / "out").exists()


def test_a_missing_onnx_file_is_a_one_line_error(tmp_path, monkeypatch, capsys, exported) -> None:
    with pytest.raises(DataError, match="no such model file"):
        DepthPredictor(tmp_path / "none.onnx")
    code, _, err = run_cli(monkeypatch, capsys, "predict", str(tmp_path / "none.onnx"), str(exported[2][0]),
                           "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "none.onnx")
