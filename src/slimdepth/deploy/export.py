"""``slimdepth export``: a checkpoint, run or zoo model as an ONNX, LiteRT or OpenVINO file.

The exported graph reads the raw [0, 1] RGB image (NCHW float32; the normalisation is folded
into the first convolution) and returns depth in metres at the input size, with the model's
resize layers in the graph. Every export is checked before it is kept: ``onnx.checker`` for
ONNX, and a parity check against PyTorch on a seeded random image and a synthetic street frame
(at a second size too for ``--dynamic``). A failed check is an error and leaves no file behind:
everything is written in a temporary folder beside ``out`` and moved into place at the end,
model file and ``FILE.json`` report together.

Tolerances (max |depth difference|): 1e-4 m for ONNX Runtime and OpenVINO in f32, which sum in
PyTorch's order closely enough; 1e-3 of the model's depth range for LiteRT, whose XNNPACK
kernels sum in another order (0.0045 m seen on an untrained LiteDepth at 80 m range: 6e-5 of
the range) -- a thousandth of the range is far below any metric's threshold (delta1 allows 25%).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimdepth.compress.gating.convert import gating_config
from slimdepth.data.registry import build_dataset
from slimdepth.deploy.formats import SUFFIXES, check_format, export_metadata, model_bytes, report_path
from slimdepth.deploy.onnx_layout import planar_output_resize
from slimdepth.deploy.runners import Runner, load_runner
from slimdepth.errors import ConfigError, DataError, first_line, one_line
from slimdepth.loader import resolve_model
from slimdepth.models.base import DepthModel
from slimdepth.models.checkpoint import model_input_size
from slimdepth.models.normalize import fold_normalization
from slimdepth.options import check_number, check_threads, parse_size

__all__ = ["ExportSettings", "check_export_settings", "export_model", "parity_inputs", "to_onnx"]

#: max |difference| in metres allowed by the fp32 parity check, per runtime
FP32_TOLERANCE_M = 1e-4
#: LiteRT's allowance, as a fraction of the model's depth range (see the module docstring)
LITERT_TOLERANCE = 1e-3
OPSETS = (17, 18, 19, 20)


@dataclass
class ExportSettings:
    """What ``slimdepth export`` was asked for (checked by :func:`check_export_settings`)."""

    fmt: str = "onnx"
    size: tuple[int, int] | None = (192, 640)  # None: the training size the checkpoint records
    dynamic: bool = False
    int8: bool = False
    calib: str | None = None
    calib_num: int = 64
    calib_method: str = "minmax"
    int8_ops: str = "all"
    val: str | None = None
    val_num: int = 64
    opset: int = 18
    overwrite: bool = False
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


#: the packages each export needs beyond the base install (pip names; the import name swaps - for _)
EXPORT_PACKAGES = {"onnx": (), "openvino": ("openvino",), "litert": ("litert-torch", "ai-edge-litert")}
#: what --int8 needs on top (ONNX Runtime's quantization comes with onnxruntime)
INT8_PACKAGES = {"onnx": (), "litert": ("ai-edge-quantizer",)}
#: the int8 options, refused without --int8 unless left at their defaults
INT8_OPTIONS = {"calib": "--calib", "calib_num": "--calib-num", "calib_method": "--calib-method",
                "int8_ops": "--int8-ops", "val": "--val", "val_num": "--val-num"}


def check_export_settings(settings: ExportSettings, out: Path) -> list[Path]:
    """Check every option, the packages the export needs, the datasets --calib and --val name and
    the output paths before any work; return the files it will write."""
    check_format(settings.fmt)
    if settings.size is not None:
        settings.size = parse_size(settings.size, "--size")
    check_number(settings.calib_num, "--calib-num", integer=True, low=1, high=100_000)
    check_number(settings.val_num, "--val-num", integer=True, low=1, high=100_000)
    if settings.threads is not None:
        check_threads(settings.threads)
    if settings.opset not in OPSETS:
        raise ConfigError(f"--opset must be one of {', '.join(map(str, OPSETS))}, got {settings.opset!r}")
    if settings.int8:
        if settings.fmt not in ("onnx", "litert"):
            raise ConfigError(f"--int8 is offered for ONNX and LiteRT exports (static quantization), not {settings.fmt}")
        if not settings.calib:
            raise ConfigError("--int8 needs --calib DATASET: static quantization calibrates on real images")
        from slimdepth.deploy.quantize import check_calibration_method  # lazy: onnxruntime.quantization is heavy

        check_calibration_method(settings.calib_method, settings.fmt, settings.int8_ops)
    else:
        defaults = ExportSettings()
        for name, option in INT8_OPTIONS.items():
            if getattr(settings, name) != getattr(defaults, name):
                raise ConfigError(f"{option} is for --int8 exports; add --int8 or drop {option}")
    if settings.dynamic and settings.fmt == "litert":
        raise ConfigError("--dynamic is not offered for LiteRT: its interpreter takes the shape the model was converted at")
    packages = EXPORT_PACKAGES[settings.fmt] + (INT8_PACKAGES[settings.fmt] if settings.int8 else ())
    missing = [name for name in packages if importlib.util.find_spec(name.replace("-", "_")) is None]
    if missing:
        raise ConfigError(f"--format {settings.fmt}{' --int8' if settings.int8 else ''} needs {', '.join(missing)}, "
                          "not installed: pip install 'slimdepth[deploy]'")
    suffix = SUFFIXES[settings.fmt]
    if out.suffix.lower() != suffix:
        raise ConfigError(f"--out {out}: a {settings.fmt} export is a {suffix} file (e.g. {out.with_suffix(suffix).name})")
    targets = [out, report_path(out)] + ([out.with_suffix(".bin")] if settings.fmt == "openvino" else [])
    for target in targets:
        if target.is_dir():
            raise ConfigError(f"{target}: is a folder; --out names the model file to write")
        if target.exists() and not settings.overwrite:
            raise ConfigError(f"{target}: already exists; pass --overwrite to replace it")
    if out.parent.exists() and not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: is not a folder")
    if settings.int8:  # building a dataset lists its folder (or sets up a generator): no image is read
        _check_dataset(settings.calib, "--calib")
        if settings.val and settings.val != settings.calib:
            _check_dataset(settings.val, "--val")
    return targets


def _check_dataset(spec: str, option: str) -> None:
    """The dataset ``spec`` can be built and has images; otherwise a one-line error naming ``option``."""
    try:
        dataset = build_dataset(spec)
    except (ConfigError, DataError) as exc:
        raise type(exc)(f"{option}: {one_line(exc)}") from None
    if len(dataset) == 0:
        raise DataError(f"{option} {spec}: the dataset has no images")


def _exportable(model: DepthModel) -> DepthModel:
    """The model as the export graph: eval mode, normalisation folded; gated models refused."""
    if gating_config(model) is not None:
        raise ConfigError("this checkpoint uses dynamic channel gating, whose channel choice depends on each image; "
                          "it is not exported (its speed-up exists only in PyTorch's sparse batch-1 path): export the "
                          "checkpoint it was gated from, or a masks/magnitude/uniform pruned one")
    folded = model if model.config.get("folded_normalization") else fold_normalization(model)
    return folded.eval()


def parity_inputs(size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The two images every export is checked on: seeded uniform noise, and a synthetic street frame."""
    h, w = size
    noise = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).numpy()
    frame = build_dataset(f"synthetic,num=1,size={h}x{w},seed=11")[0]["image"][None].numpy()
    return {"random": noise.astype(np.float32), "synthetic": np.ascontiguousarray(frame, dtype=np.float32)}


def _second_size(size: tuple[int, int]) -> tuple[int, int]:
    """Another size for checking a dynamic export: about 3/4 of each side, a multiple of 32 -- or,
    where that is the side itself (32, 64), the side + 32: every side differs from the first size's,
    so a graph that kept either one fixed fails the check."""
    def other(side: int) -> int:
        smaller = max(32, int(round(side * 0.75 / 32)) * 32)
        return smaller if smaller != side else side + 32

    return other(size[0]), other(size[1])


def to_onnx(model: DepthModel, path: Path, size: tuple[int, int], dynamic: bool = False, opset: int = 18,
            metadata: dict[str, Any] | None = None) -> dict[str, int]:
    """Write ``model`` (already folded, eval) as ONNX with ``metadata`` in ``metadata_props`` and check it.

    The graph gets the layout passes of :mod:`slimdepth.deploy.onnx_layout` (same numbers, faster
    under ONNX Runtime); returns what each pass changed."""
    import onnx

    from slimdepth.runtime.session import METADATA_KEY

    x = torch.rand(1, 3, *size)
    axes = {"image": {2: "height", 3: "width"}, "depth": {2: "height", 3: "width"}} if dynamic else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(model, (x,), str(path), opset_version=opset, dynamo=False, input_names=["image"],
                          output_names=["depth"], dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load(str(path))
    passes = {"planar_output_resize": planar_output_resize(proto)}
    if metadata is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    proto.producer_name = "slimdepth"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return passes


def _to_openvino(onnx_path: Path, path: Path, metadata: dict[str, Any]) -> None:
    import openvino as ov

    try:
        model = ov.convert_model(str(onnx_path))
        model.set_rt_info(json.dumps(metadata, sort_keys=True), ["slimdepth"])
        ov.save_model(model, str(path), compress_to_fp16=False)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own classes: one line naming the file
        raise DataError(f"{path.name}: OpenVINO conversion failed: {first_line(exc)}") from None


def _to_litert(model: DepthModel, path: Path, size: tuple[int, int]) -> None:
    import litert_torch  # lazy: it loads JAX; check_export_settings has checked it is installed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            litert_torch.convert(model, (torch.rand(1, 3, *size),)).export(str(path))
        except Exception as exc:  # noqa: BLE001 - torch.export, MLIR and TF errors alike: one line naming the file
            raise DataError(f"{path.name}: LiteRT conversion (litert-torch) failed: {first_line(exc)}") from None


def parity(model: DepthModel, runner: Runner, size: tuple[int, int], tolerance: float) -> list[dict[str, Any]]:
    """Compare ``runner`` with PyTorch on :func:`parity_inputs` at ``size``; one row per input."""
    rows = []
    for name, x in parity_inputs(size).items():
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        got = runner.run(x)
        if got.shape != want.shape:
            raise DataError(f"the {runner.runtime} export returns shape {got.shape} for a {x.shape} input, "
                            f"PyTorch {want.shape}")
        diff = np.abs(got.astype(np.float64) - want)
        finite = bool(np.isfinite(got).all())
        rows.append({"input": name, "size": list(size), "runtime": runner.runtime, "max_abs_diff_m": float(diff.max()),
                     "mean_abs_diff_m": float(diff.mean()), "tolerance_m": tolerance,
                     "depth_range_m": [float(want.min()), float(want.max())],
                     "passed": finite and float(diff.max()) <= tolerance})
    return rows


def export_model(spec: str | Path | DepthModel, out: str | Path, settings: ExportSettings,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export ``spec`` (zoo name, checkpoint, run directory or a model) to ``out``; return the
    report written to ``FILE.json``. Raises ConfigError/DataError (nothing written) on failure."""
    out = Path(out)
    check_export_settings(settings, out)
    say = log or (lambda message: None)
    if isinstance(spec, DepthModel):
        model, source = spec, None
    else:
        model, source = resolve_model(spec)
    graph = _exportable(model)
    if settings.size is None:
        settings.size = model_input_size(model)
        if settings.size is None:
            raise ConfigError("--size HxW is needed: this model records no training input size")
    size = settings.size
    metadata = export_metadata(model.config, size, settings.dynamic, source, settings.extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".slimdepth-export-", dir=out.parent))
    start = time.perf_counter()
    try:
        report = _export_into(graph, work, out, settings, metadata, say)
        report["export_seconds"] = round(time.perf_counter() - start, 2)
        report["file_bytes"] = model_bytes(work / out.name)
        (work / report_path(out).name).write_text(json.dumps(report, indent=2) + "\n")
        for name in [out.name, report_path(out).name] + ([out.with_suffix(".bin").name] if settings.fmt == "openvino" else []):
            (work / name).replace(out.parent / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _export_into(graph: DepthModel, work: Path, out: Path, settings: ExportSettings, metadata: dict[str, Any],
                 say: Callable[[str], None]) -> dict[str, Any]:
    """Write the export into ``work`` under ``out``'s name, check it, and return its report."""
    size, fmt = settings.size, settings.fmt
    target = work / out.name
    report: dict[str, Any] = {"file": str(out), "format": fmt, "metadata": metadata, "checks": {}}
    sizes = [size] + ([_second_size(size)] if settings.dynamic else [])
    if fmt in ("onnx", "openvino"):
        onnx_path = work / ("fp32.onnx" if settings.int8 or fmt != "onnx" else out.name)
        say(f"exporting ONNX (opset {settings.opset}) at {size[0]}x{size[1]}{' with dynamic height/width' if settings.dynamic else ''}")
        report["graph_passes"] = to_onnx(graph, onnx_path, size, settings.dynamic, settings.opset, metadata)
        report["checks"]["onnx_checker"] = "passed"
        runtime, path = "ort", onnx_path
        if fmt == "openvino":
            say("converting to OpenVINO IR (f32 weights)")
            _to_openvino(onnx_path, target, metadata)
            runtime, path = "openvino", target
        tolerance = FP32_TOLERANCE_M
    else:
        say(f"converting with litert-torch at {size[0]}x{size[1]} (about half a minute)")
        path = work / ("fp32.tflite" if settings.int8 else out.name)
        _to_litert(graph, path, size)
        runtime, tolerance = "litert", LITERT_TOLERANCE * graph.max_depth
    rows = []
    for s in sizes:
        runner = load_runner(path, runtime, threads=settings.threads, spinning=False)
        rows += parity(graph, runner, s, tolerance)
    report["parity"] = rows
    failed = [r for r in rows if not r["passed"]]
    if failed:
        worst = max(failed, key=lambda r: r["max_abs_diff_m"])
        raise DataError(f"parity check failed: the {runtime} export differs from PyTorch by up to "
                        f"{worst['max_abs_diff_m']:.3g} m on the {worst['input']} {worst['size'][0]}x{worst['size'][1]} "
                        f"input (tolerance {tolerance:.3g} m); nothing was written")
    report["checks"]["parity"] = "passed"
    say("parity with PyTorch: " + ", ".join(f"{r['input']} {r['size'][0]}x{r['size'][1]} max {r['max_abs_diff_m']:.2g} m"
                                           for r in rows))
    if settings.int8:
        from slimdepth.deploy.quantize import quantize_export  # lazy: onnxruntime.quantization is heavy

        report["int8"] = quantize_export(path, target, settings, metadata, say)  # the fp32 file, parity-checked
    return report
