"""What each runtime runs for one model: the PyTorch model itself, or a file exported for it.

:func:`runtime_artefacts` is shared by ``bench``, ``compare --runtime`` and ``cost --runtime``, so
every verb measures the same files. A zoo name, checkpoint or run directory is exported once per
format at ``size`` into ``work`` with :func:`slimdepth.deploy.export.export_model` (parity-checked):
ONNX for ``ort``, ``openvino`` and ``openvino-bf16`` (OpenVINO reads the ONNX graph), that ONNX
file quantized to int8 QDQ for ``ort-int8`` (calibrated on ``calib``), LiteRT for ``litert`` and that
LiteRT file quantized to full integer for ``litert-int8`` (calibrated likewise). An
exported file given directly runs on the runtimes that read its format. Each runtime's entry is a
worker spec (what :mod:`slimdepth.deploy.bench_worker` loads: ``runtime``, ``path`` or ``model``,
``size``) or a one-line note saying why that runtime cannot run the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from slimdepth.deploy.formats import format_of
from slimdepth.deploy.runners import FILE_RUNTIMES
from slimdepth.errors import ConfigError, DataError

__all__ = ["INT8_RUNTIMES", "check_calibration", "check_runs_on", "file_runtime", "runtime_artefacts",
           "runtimes_reading"]

#: the runtimes that run a model quantized here, and so need calibration images
INT8_RUNTIMES = ("ort-int8", "litert-int8")


def file_runtime(runtime: str) -> str:
    """The runtime that runs the file made for ``runtime``: an int8 file is an ONNX or LiteRT file
    like any other (``ort-int8`` -> ``ort``, ``litert-int8`` -> ``litert``)."""
    return runtime.removesuffix("-int8")


def runtimes_reading(fmt: str) -> list[str]:
    """The runtimes that run a file of export format ``fmt`` (an int8 ``.onnx`` file runs on ``ort``)."""
    return [runtime for runtime, formats in FILE_RUNTIMES.items() if fmt in formats]


def check_calibration(runtimes: Sequence[str], calib: str | None, required: bool = True) -> None:
    """``calib`` is needed by the int8 runtimes (unless not ``required``) and means nothing to the others."""
    int8 = [r for r in runtimes if r in INT8_RUNTIMES]
    if int8 and not calib and required:
        raise ConfigError(f"--runtime {int8[0]} needs --calib DATASET: static quantization calibrates on real images")
    if calib and not int8:
        raise ConfigError(f"--calib is for --runtime {' or '.join(INT8_RUNTIMES)}; add one of them or drop --calib")


def check_runs_on(path: str | Path, runtimes: Sequence[str]) -> None:
    """An exported file must exist and be read by one of ``runtimes``: checked before any work, so
    that ``compare`` and ``cost`` refuse it in one line naming the runtimes that would read it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    readers = runtimes_reading(format_of(path) or "")
    if not set(readers) & set(runtimes):
        raise ConfigError(f"{path}: a {path.suffix} file runs on {', '.join(readers)}, not on --runtime "
                          f"{','.join(runtimes)}")


def _exported_file_plan(path: Path, runtimes: Sequence[str], size: tuple[int, int]) -> dict[str, dict[str, Any] | str]:
    """An exported file: a worker spec for each runtime that reads its format, a note for the rest."""
    fmt = format_of(path)
    assert fmt is not None
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    plan: dict[str, dict[str, Any] | str] = {}
    for runtime in runtimes:
        if runtime == "torch":
            plan[runtime] = "an exported file has no PyTorch model"
        elif runtime.endswith("-int8"):
            plan[runtime] = f"give the int8 file itself (runtime {file_runtime(runtime)})"
        elif fmt in FILE_RUNTIMES[runtime]:
            plan[runtime] = {"size": list(size), "runtime": runtime, "path": str(path)}
        else:
            plan[runtime] = f"a {fmt} file does not run on {runtime}"
    return plan


def runtime_artefacts(spec: str, runtimes: Sequence[str], size: tuple[int, int], work: Path,
                      calib: str | None = None, calib_num: int = 16, log: Callable[[str], None] | None = None,
                      strict: bool = False) -> dict[str, dict[str, Any] | str]:
    """What each of ``runtimes`` runs for ``spec`` (see the module docstring), exporting into ``work``.

    ``ort-int8`` and ``litert-int8`` calibrate on ``calib_num`` images of dataset ``calib`` (required). A
    failed export is a note (``not exported: ...``) unless ``strict``, where it is raised, naming
    the model and the runtime.
    """
    from slimdepth.deploy.export import ExportSettings, export_model  # lazy: export loads torch and the exporters

    say = log or (lambda message: None)
    if format_of(spec) is not None:
        return _exported_file_plan(Path(spec), runtimes, size)
    base = {"size": list(size)}
    stem = work / Path(str(spec)).name.replace(":", "_")
    stem.mkdir(parents=True, exist_ok=True)
    plan: dict[str, dict[str, Any] | str] = {}
    onnx_path: Path | None = None
    litert_path: Path | None = None
    batches: list[Any] = []  # the calibration images, read once for both int8 runtimes

    def calibration() -> list[Any]:
        from slimdepth.deploy.quantize import calibration_batches  # lazy: reads the dataset

        if not calib:
            raise ConfigError(f"{runtime} needs --calib DATASET: static quantization calibrates on real images")
        if not batches:
            say(f"reading {calib_num} calibration images of {calib}")
            batches.extend(calibration_batches(calib, size, calib_num))
        return batches

    for runtime in runtimes:
        try:
            if runtime == "torch":
                plan[runtime] = {**base, "runtime": "torch", "model": str(spec)}
            elif runtime in ("ort", "openvino", "openvino-bf16", "ort-int8"):
                if onnx_path is None:
                    say(f"{spec}: exporting ONNX")
                    export_model(spec, stem / "model.onnx", ExportSettings("onnx", size))
                    onnx_path = stem / "model.onnx"
                path = onnx_path
                if runtime == "ort-int8":  # the parity-checked fp32 file, quantized (no accuracy report here)
                    from slimdepth.deploy.quantize import quantize_onnx  # lazy: onnxruntime.quantization is heavy

                    images = calibration()
                    say(f"{spec}: quantizing to int8 (calibrated on {len(images)} images of {calib})")
                    path = stem / "int8.onnx"
                    quantize_onnx(onnx_path, path, images)
                plan[runtime] = {**base, "runtime": runtime, "path": str(path)}
            elif runtime in ("litert", "litert-int8"):
                if litert_path is None:
                    say(f"{spec}: converting to LiteRT")
                    export_model(spec, stem / "model.tflite", ExportSettings("litert", size))
                    litert_path = stem / "model.tflite"
                path = litert_path
                if runtime == "litert-int8":
                    from slimdepth.deploy.quantize import quantize_litert  # lazy: ai-edge-quantizer is heavy

                    images = calibration()
                    say(f"{spec}: quantizing LiteRT to full integer (calibrated on {len(images)} images of {calib})")
                    path = stem / "int8.tflite"
                    quantize_litert(litert_path, path, images)
                plan[runtime] = {**base, "runtime": runtime, "path": str(path)}
        except (ConfigError, DataError) as exc:
            if strict:
                raise type(exc)(f"{spec} on {runtime}: {exc}") from None
            plan[runtime] = f"not exported: {exc}"
    return plan
