"""``compare --runtime`` and ``cost --runtime``: accuracy and latency of the deployed artefact itself.

One tiny checkpoint (tiny-multires, 32x64) on PyTorch and ONNX Runtime: the exported rows score
what the exported file scores (the export is exact, so the metrics equal PyTorch's), are timed
in worker processes, count the PyTorch network's parameters and MACs, and weigh the file that
ships; bad runtimes and files are refused in one line before anything loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

import slimdepth
from slimdepth.compress import compare as compare_module
from slimdepth.deploy.cost import count_macs, count_parameters
from slimdepth.deploy.export import ExportSettings, export_model
from slimdepth.models.checkpoint import save_model
from slimdepth.models.zoo import build_model
from tests.helpers import assert_one_line_error, run_cli

SIZE = (32, 64)
VAL = "synthetic,num=4,size=32x64,split=val,lidar=false"
FAST = ("--runs", "3", "--warmup", "1", "--threads", "1")
MIB = 2**20


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    return save_model(build_model("tiny-multires"), folder / "tiny.safetensors", metadata={"input_size": list(SIZE)})


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, checkpoint) -> Path:
    """The checkpoint exported as compare exports it (same size, same settings): the same bytes."""
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_model(str(checkpoint), path, ExportSettings("onnx", SIZE))
    return path


def _spy_on_load_exported(monkeypatch) -> list[list]:
    """Record which file each exported row was scored with, on which runtime, and how many
    images that runtime was given."""
    calls: list[list] = []
    real = compare_module.load_exported

    def spy(path, runtime=None, *args, **kwargs):
        model = real(path, runtime, *args, **kwargs)
        call = [Path(path).name, runtime, 0]
        calls.append(call)
        run = model.runner.run

        def counted(batch):
            call[2] += batch.shape[0]
            return run(batch)

        model.runner.run = counted
        return model

    monkeypatch.setattr(compare_module, "load_exported", spy)
    return calls


def test_compare_torch_and_ort_rows_score_the_export_and_time_both(tmp_path, monkeypatch, capsys, checkpoint,
                                                                   onnx_file) -> None:
    calls = _spy_on_load_exported(monkeypatch)
    out = tmp_path / "rows.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "compare", str(checkpoint), "--data", VAL, "--runtime", "torch,ort",
                                *FAST, "--json", str(out))
    assert code == 0, err
    rows = json.loads(out.read_text())
    assert [(r["name"], r["runtime"]) for r in rows] == [(str(checkpoint), "torch"), (str(checkpoint), "ort")]
    torch_row, ort_row = rows
    assert calls == [["model.onnx", "ort", 4]]  # the ort row: the 4 images went through ONNX Runtime
    for key in ("d1", "abs_rel", "rmse"):
        assert ort_row[key] == pytest.approx(torch_row[key], abs=1e-4)
    assert torch_row["images"] == ort_row["images"] == 4
    for row in rows:
        assert 0 < row["latency_median_ms"] <= row["latency_p90_ms"] and row["latency_runs"] == 3
        assert row["latency_threads"] == 1 and row["input_size"] == list(SIZE)
    model = slimdepth.load(checkpoint)
    assert torch_row["params"] == ort_row["params"] == count_parameters(model)
    assert torch_row["macs"] == ort_row["macs"] == count_macs(model, SIZE).total
    assert ort_row["file_bytes"] == onnx_file.stat().st_size
    assert ort_row["size_mb"] == pytest.approx(onnx_file.stat().st_size / MIB)
    assert torch_row["size_mb"] == pytest.approx(checkpoint.stat().st_size / MIB)
    header = next(line for line in stdout.splitlines() if line.startswith("model"))
    assert header.split()[:2] == ["model", "runtime"]
    assert "each row in its own process" in stdout


def test_compare_scores_an_exported_file_given_directly(tmp_path, monkeypatch, capsys, checkpoint, onnx_file) -> None:
    """Its parameters and MACs come from the network its metadata describes; a file without that
    description shows ``-`` for them. The file is skipped on torch, which cannot run it."""
    bare = onnx.load(str(onnx_file))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    out = tmp_path / "rows.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "compare", str(onnx_file), str(tmp_path / "bare.onnx"), "--data",
                                VAL, "--runtime", "torch,ort", *FAST, "--json", str(out))
    assert code == 0, err
    described, undescribed = json.loads(out.read_text())
    assert (described["runtime"], undescribed["runtime"]) == ("ort", "ort")
    model = slimdepth.load(checkpoint)
    assert described["params"] == count_parameters(model) and described["macs"] == count_macs(model, SIZE).total
    assert undescribed["params"] is None and undescribed["macs"] is None
    assert described["file_bytes"] == onnx_file.stat().st_size
    assert undescribed["d1"] == pytest.approx(described["d1"], abs=1e-6)
    assert "has no PyTorch model" in stdout
    line = next(line for line in stdout.splitlines() if line.startswith(f"{tmp_path / 'bare.onnx'} "))
    assert line.split()[1:4] == ["ort", "-", "-"]


def test_cost_on_ort_reports_the_export_and_its_latency(tmp_path, monkeypatch, capsys, checkpoint, onnx_file) -> None:
    out = tmp_path / "cost.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "cost", str(checkpoint), "--runtime", "ort", *FAST, "--json",
                                str(out))
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["runtime"] == "ort" and report["input_size"] == list(SIZE)
    assert report["file_bytes"] == onnx_file.stat().st_size
    assert report["size_mb"] == pytest.approx(onnx_file.stat().st_size / MIB)
    assert 0 < report["latency_median_ms"] <= report["latency_p90_ms"]
    assert report["latency"]["runs"] == 3 and report["latency"]["threads"] == 1
    model = slimdepth.load(checkpoint)
    assert report["params"] == count_parameters(model) and report["macs"] == count_macs(model, SIZE).total
    assert f"{checkpoint} (ort)" in stdout


@pytest.mark.parametrize("verb", ["compare", "cost"])
@pytest.mark.parametrize(("model", "args", "fragment"), [
    ("CKPT", ["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
    ("CKPT", ["--runtime", "ort-int8"], "ort-int8 needs --calib DATASET"),
    ("CKPT", ["--runtime", "litert-int8"], "litert-int8 needs --calib DATASET"),
    ("CKPT", ["--runtime", "ort", "--calib", VAL], "--calib is for --runtime ort-int8"),
    ("m.tflite", ["--runtime", "ort"], "m.tflite: a .tflite file runs on litert, not on --runtime ort"),
    ("m.onnx", ["--runtime", "litert"], "m.onnx: a .onnx file runs on ort, openvino, openvino-bf16"),
    ("m.onnx", [], "not on --runtime torch"),
    ("missing.onnx", ["--runtime", "ort"], "missing.onnx: no such model file"),
])
def test_bad_runtimes_and_files_are_one_line_errors_before_any_work(tmp_path, monkeypatch, capsys, checkpoint, verb,
                                                                     model, args, fragment) -> None:
    (tmp_path / "m.tflite").write_bytes(b"not read: refused by its suffix")
    (tmp_path / "m.onnx").write_bytes(b"not read: refused by its suffix")
    for where in ("slimdepth.loader.load_model", "slimdepth.loader.resolve_model", "slimdepth.compress.compare.load_model",
                  "slimdepth.compress.compare.resolve_model", "slimdepth.data.registry.build_dataset"):
        monkeypatch.setattr(where, lambda *a, **k: pytest.fail("a model or dataset was loaded"))
    target = str(checkpoint) if model == "CKPT" else str(tmp_path / model)
    data = ["--data", VAL] if verb == "compare" else []
    code, _, err = run_cli(monkeypatch, capsys, verb, target, *data, *args)
    assert_one_line_error(code, err, fragment)


def test_cost_measures_one_runtime_at_a_time(monkeypatch, capsys, checkpoint) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "cost", str(checkpoint), "--runtime", "ort,openvino")
    assert_one_line_error(code, err, "cost measures one runtime at a time")


def test_calibrating_on_the_evaluation_data_is_warned_about(monkeypatch, capsys, tmp_path) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(tmp_path / "absent"), "--data", VAL, "--runtime",
                           "ort-int8", "--calib", VAL)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and lines[0].startswith("warning: --calib is the evaluation data")
    assert lines[1].startswith("error: ") and "absent" in lines[1]
