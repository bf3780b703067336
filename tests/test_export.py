"""Export: every zoo model and pruned checkpoint to ONNX, matching PyTorch; metadata; dynamic
sizes; OpenVINO and LiteRT; int8; the safety rules (no file left behind, nothing overwritten)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

import slimdepth
from slimdepth.deploy import export as export_module
from slimdepth.deploy.export import ExportSettings, export_model, parity_inputs
from slimdepth.deploy.exported import load_exported
from slimdepth.deploy.formats import file_sha256, report_path
from slimdepth.deploy.runners import load_runner
from slimdepth.errors import ConfigError, DataError
from slimdepth.models import build_model, fold_normalization, save_model
from slimdepth.models.widths import WIDTHS_KEY
from slimdepth.runtime import DepthPredictor, OnnxDepthModel
from tests.helpers import assert_one_line_error, run_cli, vivid
from tests.test_prune import make_source

SIZE = (64, 128)

ZOO_CASES = [
    ("fastdepth", {}),
    ("litedepth", {}),
    ("litedepth", {"variant": "small"}),
    ("litedepth-released", {}),
    ("resnet18-unet", {}),
    ("resnet50-unet", {}),
    *[("tiny-multires", {"heads": h}) for h in (1, 2, 3, 4)],
]


def _spread(depth: np.ndarray) -> float:
    """Metres between the 5th and 95th percentile of a depth map."""
    return float(np.percentile(depth, 95) - np.percentile(depth, 5))


def _torch_depth(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize(("name", "options"), ZOO_CASES, ids=lambda v: str(v) if isinstance(v, str) else
                         ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_every_zoo_model_exports_to_onnx_and_matches_pytorch(tmp_path, name, options) -> None:
    torch.manual_seed(0)
    model = vivid(build_model(name, **options))
    out = tmp_path / "m.onnx"
    report = export_model(model, out, ExportSettings("onnx", SIZE))
    assert [r["input"] for r in report["parity"]] == ["random", "synthetic"]
    assert all(r["passed"] and r["max_abs_diff_m"] <= 1e-4 for r in report["parity"])
    assert json.loads(report_path(out).read_text()) == report
    # an independent check: ONNX Runtime on a fresh input against the unfolded PyTorch model
    x = np.random.default_rng(1).random((1, 3, *SIZE), dtype=np.float32)
    got = OnnxDepthModel.load(out).run(x)
    np.testing.assert_allclose(got, _torch_depth(model, x), atol=1e-4, rtol=0)
    assert got.shape == (1, 1, *SIZE) and float(got.max()) <= model.max_depth + 1e-4


@pytest.fixture(scope="module")
def pruned_runs(tmp_path_factory) -> dict[str, Path]:
    """Pruned checkpoints from each method, as `slimdepth prune` writes them."""
    import sys

    from slimdepth.cli import main

    root = tmp_path_factory.mktemp("pruned")
    source = make_source(root, "litedepth", internal_size=None)
    runs = {}
    for method in ("masks", "magnitude", "uniform"):
        runs[method] = root / method
        argv = sys.argv
        sys.argv = ["slimdepth", "prune", str(source), "--method", method, "--target-macs", "0.5", "--steps", "3",
                    "--out", str(runs[method])]
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None)
        finally:
            sys.argv = argv
    return runs


@pytest.mark.parametrize("method", ["masks", "magnitude", "uniform"])
def test_pruned_checkpoints_export_from_their_sidecars(tmp_path, pruned_runs, method) -> None:
    run = pruned_runs[method]
    out = tmp_path / f"{method}.onnx"
    report = export_model(run, out, ExportSettings("onnx", (32, 96)))
    assert all(r["passed"] for r in report["parity"])
    meta = OnnxDepthModel.load(out).metadata
    assert meta["options"][WIDTHS_KEY]  # the pruned widths travel with the file
    model = slimdepth.load(run)
    x = parity_inputs((32, 96))["synthetic"]
    np.testing.assert_allclose(OnnxDepthModel.load(out).run(x), _torch_depth(model, x), atol=1e-4, rtol=0)
    weights = run / "checkpoints" / "best.safetensors"
    assert meta["source_sha256"] == file_sha256(weights)


def test_metadata_describes_the_export(tmp_path) -> None:
    torch.manual_seed(0)
    path = save_model(build_model("litedepth", max_depth=40.0), tmp_path / "ck", metadata={"input_size": [64, 128]})
    out = tmp_path / "ld.onnx"
    slimdepth_settings = ExportSettings("onnx", None)  # the size the checkpoint records
    export_model(path, out, slimdepth_settings)
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version >= 17
    onnx.checker.check_model(proto, full_check=True)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["slimdepth"])
    assert meta["model"] == "litedepth" and meta["options"]["variant"] == "large"
    assert meta["input_size"] == [64, 128] and meta["unit"] == "metres" and meta["max_depth"] == 40.0
    assert meta["slimdepth_version"] == slimdepth.__version__ and meta["dynamic_size"] is False
    assert meta["source_sha256"] == file_sha256(path)
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["depth"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 128]
    # the normalisation is folded: the graph reads the raw image, the in-network resize is inside
    assert {n.op_type for n in proto.graph.node} >= {"Conv", "Resize"}


def test_dynamic_export_runs_at_other_sizes_including_litedepths_internal_resize(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("litedepth")  # resizes to 128x160 inside, whatever the input
    out = tmp_path / "dyn.onnx"
    report = export_model(model, out, ExportSettings("onnx", (96, 160), dynamic=True))
    assert {tuple(r["size"]) for r in report["parity"]} == {(96, 160), (64, 128)}
    onnx_model = OnnxDepthModel.load(out)
    assert onnx_model.input_size is None and onnx_model.default_size == (96, 160)
    for size in ((120, 200), (64, 96)):
        x = np.random.default_rng(2).random((1, 3, *size), dtype=np.float32)
        np.testing.assert_allclose(onnx_model.run(x), _torch_depth(model, x), atol=1e-4, rtol=0)


@given(st.integers(1, 8192), st.integers(1, 8192))
@example(32, 64)  # 3/4 of either side, rounded to 32, is the side itself
def test_the_second_size_of_a_dynamic_check_differs_on_every_side(h, w) -> None:
    second = export_module._second_size((h, w))
    for side, other in zip((h, w), second):
        assert other != side and other >= 32 and other % 32 == 0
        assert other <= max(round(side * 0.75) + 16, side + 32)  # about 3/4, or one step of 32 up


def test_openvino_export_matches_in_f32_and_bf16_is_its_own_close_option(tmp_path) -> None:
    torch.manual_seed(0)
    model = vivid(build_model("litedepth-released"))
    out = tmp_path / "ld.xml"
    report = export_model(model, out, ExportSettings("openvino", SIZE))
    assert out.is_file() and out.with_suffix(".bin").is_file() and report["checks"]["parity"] == "passed"
    x = parity_inputs(SIZE)["synthetic"]
    want = _torch_depth(model, x)
    np.testing.assert_allclose(load_runner(out, "openvino").run(x), want, atol=1e-4, rtol=0)
    bf16 = load_runner(out, "openvino-bf16").run(x)
    assert np.median(np.abs(bf16 - want) / want) < 0.05  # bfloat16 keeps 8 bits of mantissa: close, not equal
    assert load_exported(out).metadata["model"] == "litedepth"  # read from the report beside the IR


@pytest.mark.parametrize("name", ["litedepth-released", "litedepth"])
def test_litert_export_matches_within_a_thousandth_of_the_depth_range(tmp_path, request, name) -> None:
    if name == "litedepth-released":  # the conversion the other LiteRT tests share (tests/conftest.py)
        shared = request.getfixturevalue("released_litert")
        model, out, report = shared.model, shared.tflite, shared.report
    else:  # vivid as the shared one (depth spread over metres), without litedepth's in-network resize
        torch.manual_seed(0)
        model, out = vivid(build_model(name, internal_size="none"), head_gain=30), tmp_path / "ld.tflite"
        report = export_model(model, out, ExportSettings("litert", SIZE))
    assert all(r["passed"] for r in report["parity"])
    assert report["parity"][0]["tolerance_m"] == pytest.approx(1e-3 * model.max_depth)
    x = np.random.default_rng(3).random((1, 3, *SIZE), dtype=np.float32)
    got, want = load_runner(out, "litert").run(x), _torch_depth(model, x)
    assert _spread(want) > 1.0  # a depth map that varies: parity means something
    assert np.abs(got - want).max() <= 1e-3 * model.max_depth
    with pytest.raises(ConfigError, match="not offered for LiteRT"):
        export_model(model, tmp_path / "d.tflite", ExportSettings("litert", SIZE, dynamic=True))


def test_int8_export_is_static_qdq_with_a_float_head_and_reports_both_models(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("litedepth-released")
    out = tmp_path / "q.onnx"
    data, val = "synthetic,num=6,size=64x128", "synthetic,num=2,size=64x128,split=val"
    report = export_model(model, out, ExportSettings("onnx", SIZE, int8=True, calib=data, calib_num=4, val=val,
                                                     val_num=3, threads=1))  # 1: no settle wait between timings
    proto = onnx.load(str(out))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    # per-channel weights: the scales of a conv's weight are a vector
    scales = {i.name: i for i in proto.graph.initializer}
    assert any(len(t.dims) == 1 and t.dims[0] > 1 for n, t in scales.items() if n.endswith("_scale"))
    # the depth head (last conv onwards) is float: the output is not a dequantized uint8 map
    last = next(n for n in proto.graph.node if "depth" in n.output)
    assert last.op_type != "DequantizeLinear"
    q = report["int8"]
    # the images scored, not --val-num echoed: the validation set holds only 2
    assert q["calibration"]["images"] == 4 and q["validation"] == {"dataset": val, "images": 2}
    for key in ("d1", "abs_rel", "rmse", "median_ms"):
        assert np.isfinite(q["fp32"][key]) and np.isfinite(q["int8"][key])
    assert q["delta1_change_points"] == pytest.approx(100 * (q["int8"]["d1"] - q["fp32"]["d1"]))
    x = parity_inputs(SIZE)["synthetic"]
    fp32 = _torch_depth(model, x)
    assert np.median(np.abs(OnnxDepthModel.load(out).run(x) - fp32) / fp32) < 0.1
    assert OnnxDepthModel.load(out).metadata["model"] == "litedepth"


def test_int8_ops_conv_quantizes_the_convolutions_and_leaves_every_other_op_float(tmp_path) -> None:
    """--int8-ops conv: ONNX Runtime runs the convolutions as QLinearConv while the hard-swish and
    squeeze-excitation multiplies and the concatenations stay float (a residual Add between two
    int8 tensors is still fused by ORT); with 'all' they are int8 kernels too."""
    from slimdepth.deploy.quantize import calibration_batches, quantize_onnx

    torch.manual_seed(0)
    fp32 = tmp_path / "m.onnx"
    export_model(build_model("litedepth", variant="small"), fp32, ExportSettings("onnx", SIZE))
    batches = calibration_batches("synthetic,num=4,size=64x128", SIZE, 4)
    graphs, kernels = {}, {}
    for ops in ("all", "conv"):
        quantize_onnx(fp32, tmp_path / f"{ops}.onnx", batches, ops=ops)
        graphs[ops] = onnx.load(str(tmp_path / f"{ops}.onnx")).graph
        run_graph = _optimized_graph(tmp_path / f"{ops}.onnx", tmp_path).graph
        kernels[ops] = {n.op_type for n in run_graph.node if n.op_type.startswith("QLinear")}
    assert "QLinearConv" in kernels["conv"] and not kernels["conv"] & {"QLinearMul", "QLinearConcat"}
    assert {"QLinearConv", "QLinearAdd", "QLinearMul", "QLinearConcat"} <= kernels["all"]
    convs = [n for n in graphs["conv"].node if n.op_type == "Conv"]
    quantized = [n for n in convs if n.input[1].endswith("_DequantizeLinear_Output")]
    assert len(quantized) == len(convs) - 1  # every conv but the depth head's
    x = parity_inputs(SIZE)["synthetic"]
    want = OnnxDepthModel.load(fp32).run(x)
    got = OnnxDepthModel.load(tmp_path / "conv.onnx").run(x)
    assert np.median(np.abs(got - want) / want) < 0.1


def test_litert_int8_is_a_full_integer_file_whose_runner_speaks_float(tmp_path, reuse_litert_conversion) -> None:
    """ai-edge-quantizer's static recipe: int8 weights, activations, input and output; the runner
    quantizes the image and dequantizes the depth, and the depth stays close to fp32. The fp32
    conversion it quantizes is the shared one (tests/conftest.py), parity-checked here again."""
    import ai_edge_quantizer  # noqa: F401 - part of the dev install: CI must run this, never skip it
    from ai_edge_litert.interpreter import Interpreter

    model = reuse_litert_conversion.model
    out = tmp_path / "q.tflite"
    data = "synthetic,num=6,size=64x128"
    report = export_model(model, out, ExportSettings("litert", SIZE, int8=True, calib=data, calib_num=4, val_num=8,
                                                     threads=1))  # 1: no settle wait between timings
    assert all(r["passed"] for r in report["parity"])  # the fp32 conversion it was quantized from
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.tflite", "q.tflite.json"]
    interpreter = Interpreter(str(out))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert source["dtype"] == np.int8 and target["dtype"] == np.int8
    scale, zero = target["quantization"]
    assert scale > 0
    x = parity_inputs(SIZE)["synthetic"]
    got = load_runner(out, "litert").run(x)
    assert got.dtype == np.float32 and got.shape == (1, 1, *SIZE)
    levels = np.unique(np.round((got - (-zero * scale)) / scale, 3))
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # dequantized int8: multiples of the scale
    fp32 = _torch_depth(model, x)
    assert np.median(np.abs(got - fp32) / fp32) < 0.1
    q = report["int8"]
    assert q["runtime"] == "litert" and q["calibration"]["images"] == 4
    assert q["validation"] == {"dataset": data, "images": 6}  # the whole calibration set: fewer than --val-num
    assert q["speedup"] == pytest.approx(q["fp32"]["median_ms"] / q["int8"]["median_ms"])
    assert load_exported(out).metadata["model"] == "litedepth"


def test_a_failed_parity_check_is_an_error_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(export_module, "FP32_TOLERANCE_M", 0.0)
    out = tmp_path / "sub" / "m.onnx"
    with pytest.raises(DataError, match="parity check failed"):
        export_model(build_model("litedepth-released"), out, ExportSettings("onnx", SIZE))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["sub"]  # no model, no report, no temporary folder


def test_a_gated_checkpoint_is_refused_with_a_reason(tmp_path) -> None:
    from slimdepth.compress.gating import add_gating

    model = add_gating(build_model("resnet18-unet"), density=0.5)
    with pytest.raises(ConfigError, match="dynamic channel gating"):
        export_model(model, tmp_path / "g.onnx", ExportSettings("onnx", SIZE))
    assert not any(tmp_path.iterdir())


def test_folded_export_graph_equals_the_model_it_came_from() -> None:
    """The graph exported is the folded model: its output equals the original's, borders included."""
    torch.manual_seed(0)
    model = build_model("fastdepth").eval()
    x = parity_inputs(SIZE)["random"]
    np.testing.assert_allclose(_torch_depth(fold_normalization(model), x), _torch_depth(model, x), atol=1e-4)


# ------------------------------------------------------------------ the command line and bad input


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("onnx") / "small.onnx"
    export_model(build_model("litedepth-released"), out, ExportSettings("onnx", SIZE))
    return out


def test_export_cli_writes_the_file_and_report(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "m.onnx"
    code, stdout, err = run_cli(monkeypatch, capsys, "export", "litedepth-released", "--size", "64x128", "--out", str(out))
    assert code == 0, err
    assert out.is_file() and report_path(out).is_file() and "parity with PyTorch" in stdout


@pytest.mark.parametrize(("args", "fragment"), [
    (["--format", "tf"], "unknown export format 'tf'"),
    (["--int8"], "--int8 needs --calib"),
    (["--calib", "synthetic"], "--calib is for --int8"),
    (["--format", "openvino", "--int8", "--calib", "synthetic"], "--int8 is offered for ONNX and LiteRT"),
    (["--format", "litert", "--int8", "--calib", "synthetic", "--calib-method", "entropy"], "LiteRT int8 calibrates with minmax"),
    (["--int8", "--calib", "synthetic", "--calib-method", "kl"], "unknown calibration method 'kl'"),
    (["--int8", "--calib", "synthetic", "--int8-ops", "matmul"], "unknown --int8-ops 'matmul'"),
    (["--format", "litert", "--int8", "--calib", "synthetic", "--int8-ops", "conv"], "--int8-ops conv is offered for ONNX"),
    (["--size", "0x128"], "--size"),
    (["--opset", "9"], "--opset"),
    (["--calib-num", "0", "--int8", "--calib", "synthetic"], "--calib-num"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--threads", "2000"], "--threads must be <= 1024"),
    (["--calib-num", "8"], "--calib-num is for --int8 exports"),
    (["--calib-method", "entropy"], "--calib-method is for --int8 exports"),
    (["--int8-ops", "conv"], "--int8-ops is for --int8 exports"),
    (["--val", "synthetic"], "--val is for --int8 exports"),
    (["--val-num", "8"], "--val-num is for --int8 exports"),
    (["--int8", "--calib", "folder:/nonexistent/calib"], "--calib: /nonexistent/calib: dataset folder not found"),
    (["--int8", "--calib", "/nonexistent/calib"], "--calib: /nonexistent/calib: directory not found"),
    (["--int8", "--calib", "synthetic,colour=red"], "--calib: dataset 'synthetic' has no option 'colour'"),
    (["--int8", "--calib", "synthetic", "--val", "folder:/nonexistent/val"], "--val: /nonexistent/val: dataset folder"),
    (["--int8", "--calib", "synthetic", "--val", "synthetic,num=0"], "--val: synthetic: num must be a positive"),
])
def test_export_cli_refuses_bad_options_in_one_line(tmp_path, monkeypatch, capsys, args, fragment) -> None:
    monkeypatch.setattr("slimdepth.loader.resolve_model", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "m.onnx"
    code, _, err = run_cli(monkeypatch, capsys, "export", "litedepth", "--size", "64x128", "--out", str(out), *args)
    assert_one_line_error(code, err, fragment)
    assert not any(tmp_path.iterdir())


def test_a_missing_calibration_folder_is_a_data_error_before_any_work(tmp_path) -> None:
    settings = ExportSettings("onnx", SIZE, int8=True, calib=f"folder:{tmp_path / 'none'}")
    with pytest.raises(DataError, match="--calib: .*none: dataset folder not found"):
        export_model("litedepth", tmp_path / "m.onnx", settings)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "module", "fragment"), [
    (["--format", "openvino", "--out", "m.xml"], "openvino", "--format openvino needs openvino"),
    (["--format", "litert", "--out", "m.tflite"], "litert_torch", "--format litert needs litert-torch"),
    (["--format", "litert", "--out", "m.tflite"], "ai_edge_litert", "--format litert needs ai-edge-litert"),
    (["--format", "litert", "--out", "m.tflite", "--int8", "--calib", "synthetic"], "ai_edge_quantizer",
     "--format litert --int8 needs ai-edge-quantizer"),
])
def test_export_cli_names_a_missing_runtime_package_before_any_work(tmp_path, monkeypatch, capsys, args, module,
                                                                    fragment) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: find_spec gives None, import fails
    monkeypatch.setattr("slimdepth.loader.resolve_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = run_cli(monkeypatch, capsys, "export", "litedepth", "--size", "64x128", *args)
    assert_one_line_error(code, err, fragment, "pip install 'slimdepth[deploy]'")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("val", "warned"), [([], True), (["--val", "synthetic,split=val"], False)])
def test_int8_without_val_warns_that_accuracy_is_scored_on_the_calibration_images(tmp_path, monkeypatch, capsys,
                                                                                  val, warned) -> None:
    def stop(*args, **kwargs):
        raise ConfigError("stopped before the export")

    monkeypatch.setattr(export_module, "export_model", stop)
    code, _, err = run_cli(monkeypatch, capsys, "export", "litedepth", "--size", "64x128", "--out",
                           str(tmp_path / "m.onnx"), "--int8", "--calib", "synthetic", *val)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and lines[-1] == "error: stopped before the export"
    assert lines[:-1] == (["warning: no --val: int8 accuracy is scored on the calibration images (synthetic); give a "
                           "held-out split"] if warned else [])


def test_export_cli_never_replaces_a_file_without_overwrite(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"someone's file")
    code, _, err = run_cli(monkeypatch, capsys, "export", "litedepth", "--size", "64x128", "--out", str(out))
    assert_one_line_error(code, err, "already exists")
    assert out.read_bytes() == b"someone's file"
    report_path(tmp_path / "n.onnx").write_text("{}")  # the report's name is taken too
    code, _, err = run_cli(monkeypatch, capsys, "export", "litedepth", "--size", "64x128", "--out", str(tmp_path / "n.onnx"))
    assert_one_line_error(code, err, "n.onnx.json", "already exists")
    (tmp_path / "d.onnx").mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "export", "litedepth", "--size", "64x128", "--out", str(tmp_path / "d.onnx"))
    assert_one_line_error(code, err, "is a folder")
    code, _, err = run_cli(monkeypatch, capsys, "export", "litedepth", "--size", "64x128", "--out", str(tmp_path / "m.tflite"))
    assert_one_line_error(code, err, "onnx export is a .onnx file")


def test_a_fixed_size_export_refuses_another_size(small_onnx, tmp_path, monkeypatch, capsys) -> None:
    with pytest.raises(ConfigError, match="fixed-size export for 64x128"):
        OnnxDepthModel.load(small_onnx).run(np.zeros((1, 3, 64, 96), np.float32))
    with pytest.raises(ConfigError, match="fixed-size export"):
        DepthPredictor(small_onnx, size=(64, 96))


@pytest.fixture(scope="module")
def fixed_exports(tmp_path_factory, request, small_onnx) -> dict[str, Path]:
    """The fixed-size 64x128 export in each format (LiteRT when litert-torch is installed)."""
    torch.manual_seed(0)
    files = {"onnx": small_onnx, "openvino": tmp_path_factory.mktemp("fixed") / "small.xml"}
    export_model(build_model("litedepth-released"), files["openvino"], ExportSettings("openvino", SIZE))
    if importlib.util.find_spec("litert_torch") is not None:
        files["litert"] = request.getfixturevalue("released_litert").tflite
    return files


@pytest.mark.parametrize("verb", ["predict", "evaluate"])
@pytest.mark.parametrize("fmt", ["onnx", "openvino", "litert"])
def test_a_fixed_size_export_refuses_another_size_in_one_line(fixed_exports, tmp_path, monkeypatch, capsys, fmt,
                                                              verb) -> None:
    if fmt not in fixed_exports:
        pytest.skip("litert-torch is not installed")
    path, data = fixed_exports[fmt], "synthetic,num=2,size=64x96"
    args = ["--out", str(tmp_path / "out")] if verb == "predict" else []
    code, _, err = run_cli(monkeypatch, capsys, verb, str(path), "--data", data, "--size", "64x96", *args)
    assert_one_line_error(code, err, f"{path.name} is a fixed-size export for 64x128 inputs")
    assert not (tmp_path / "out").exists()


def _fails(*args, **kwargs):
    raise RuntimeError("boom\n  a second line of the converter's dump")


#: (the third-party call made to fail, what runs it, the file named, what the one line says failed)
THIRD_PARTY_FAILURES = [
    ("onnxruntime.quantization.shape_inference.quant_pre_process", "quantize_onnx", "q.onnx",
     "int8 preparation (onnxruntime quant_pre_process) failed"),
    ("onnxruntime.quantization.quantize_static", "quantize_onnx", "q.onnx",
     "int8 quantization (onnxruntime quantize_static) failed"),
    ("ai_edge_quantizer.quantizer.Quantizer", "quantize_litert", "q.tflite",
     "int8 quantization (ai-edge-quantizer) failed"),
    ("openvino.convert_model", "export openvino", "m.xml", "OpenVINO conversion failed"),
    ("litert_torch.convert", "export litert", "m.tflite", "LiteRT conversion (litert-torch) failed"),
]


@pytest.mark.parametrize(("call", "run", "name", "what"), THIRD_PARTY_FAILURES, ids=[c[0] for c in THIRD_PARTY_FAILURES])
def test_a_third_party_failure_is_a_one_line_data_error_naming_the_file(fixed_exports, tmp_path, monkeypatch, call, run,
                                                                        name, what) -> None:
    from slimdepth.deploy.quantize import quantize_litert, quantize_onnx

    __import__(call.split(".")[0])  # every runtime is in the dev install: CI must run these, never skip them
    monkeypatch.setattr(call, _fails)
    batches = [np.random.default_rng(0).random((1, 3, *SIZE), dtype=np.float32)]
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(DataError) as caught:
        if run == "quantize_onnx":
            quantize_onnx(fixed_exports["onnx"], work / name, batches)
        elif run == "quantize_litert":
            if "litert" not in fixed_exports:
                pytest.skip("litert-torch is not installed")
            quantize_litert(fixed_exports["litert"], work / name, batches)
        else:
            export_model(build_model("litedepth-released"), work / name, ExportSettings(run.split()[1], SIZE))
    assert str(caught.value) == f"{name}: {what}: boom"
    assert not any(work.iterdir())  # nothing left behind


def test_a_failed_quantization_is_a_note_in_runtime_artefacts_unless_strict(tmp_path, monkeypatch) -> None:
    from slimdepth.deploy.artefacts import runtime_artefacts

    monkeypatch.setattr("onnxruntime.quantization.quantize_static", _fails)
    calib = "synthetic,num=1,size=32x64"
    plan = runtime_artefacts("tiny-multires", ["ort", "ort-int8"], (32, 64), tmp_path / "a", calib, 1)
    assert plan["ort"]["path"].endswith("model.onnx")
    assert plan["ort-int8"] == "not exported: int8.onnx: int8 quantization (onnxruntime quantize_static) failed: boom"
    with pytest.raises(DataError, match="^tiny-multires on ort-int8: int8.onnx: int8 quantization"):
        runtime_artefacts("tiny-multires", ["ort-int8"], (32, 64), tmp_path / "b", calib, 1, strict=True)


# ------------------------------------------------------------------ graph layout passes


def _optimized_graph(path: Path, tmp_path: Path) -> onnx.ModelProto:
    """The graph ONNX Runtime actually runs on the CPU (all optimisations, NCHWc layout included)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(options.optimized_model_filepath)


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_the_final_resize_runs_on_the_one_depth_channel_and_changes_no_number(tmp_path, upsample) -> None:
    """Without the barrier ORT resizes the depth map in its blocked layout (16 channels, 15 of them
    padding); with it the final Resize reads a plain NCHW tensor. Nearest: bit-identical output;
    bilinear: the two kernels round the interpolation differently (within a float32 ulp)."""
    from slimdepth.deploy.onnx_layout import planar_output_resize, remove_planar_barriers

    torch.manual_seed(0)
    out = tmp_path / "m.onnx"
    report = export_model(build_model("litedepth-released", upsample=upsample), out, ExportSettings("onnx", (256, 320)))
    assert report["graph_passes"] == {"planar_output_resize": 1}
    with_pass = onnx.load(str(out))
    reshapes = [n for n in with_pass.graph.node if n.name.startswith("/slimdepth/planar_output")]
    assert len(reshapes) == 1 and reshapes[0].op_type == "Reshape"
    # the same graph without the barrier: take it out again
    without = onnx.load(str(out))
    assert remove_planar_barriers(without) == 1
    assert [n.op_type for n in without.graph.node] == [n.op_type for n in with_pass.graph.node if n not in reshapes]
    onnx.checker.check_model(without, full_check=True)
    plain = tmp_path / "plain.onnx"
    onnx.save(without, str(plain))
    assert planar_output_resize(onnx.load(str(plain))) == 1  # the pass finds the output resize again

    def final_resize_domain(path: Path) -> str:
        graph = _optimized_graph(path, tmp_path).graph
        producer = {o: n for n in graph.node for o in n.output}
        node = producer["depth"]
        while node.op_type not in ("Resize", "Upsample"):  # skip a trailing layout reorder
            node = producer[node.input[0]]
        return node.domain

    assert final_resize_domain(plain) == "com.microsoft.nchwc"  # what the pass is for
    assert final_resize_domain(out) in ("", "ai.onnx")
    x = parity_inputs((256, 320))["synthetic"]
    got, want = OnnxDepthModel.load(out).run(x), OnnxDepthModel.load(plain).run(x)
    if upsample == "nearest":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)
