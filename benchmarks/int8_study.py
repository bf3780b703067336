"""INT8 study: static quantization of trained models, per calibration method and quantized ops.

For each model (a run directory, a checkpoint or a zoo name), each choice of quantized ops
(``--int8-ops all``: every op ONNX Runtime quantizes; ``conv``: the convolutions alone) and each
calibration method (MinMax, Entropy, Percentile), ``slimdepth export --int8`` is run with the
same calibration and validation data; ``--litert`` adds LiteRT's full-integer file (MinMax).
Accuracy comes from each export's report: delta1, AbsRel and RMSE of fp32 and int8 on the
validation frames. Latency is measured afterwards, per model and runtime, in one interleaved
run: the fp32 file and every int8 file each in its own worker process, round after round, so
the speed-ups are ratios taken side by side (this VM drifts by 20% or more). The aims: at most
0.5 points of delta1 lost, at least 1.3x faster than fp32.

    slimdepth train configs/quickstart.yaml --out runs/quickstart
    slimdepth train configs/resnet18_unet_synthetic.yaml --out runs/resnet18
    python benchmarks/int8_study.py --models runs/quickstart runs/resnet18 --litert
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from slimdepth.deploy.export import ExportSettings, export_model
from slimdepth.deploy.latency import check_timing
from slimdepth.deploy.machine import cpu_model
from slimdepth.deploy.quantize import CALIBRATION_METHODS, INT8_OPS
from slimdepth.deploy.workers import time_files
from slimdepth.errors import OneLineArgumentParser, run_script
from slimdepth.loader import check_model_spec
from slimdepth.options import check_number, parse_size


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["runs/quickstart", "runs/resnet18"])
    parser.add_argument("--size", default="96x320")
    parser.add_argument("--calib", default="synthetic,num=200,size=96x320,lidar=false")
    parser.add_argument("--calib-num", type=int, default=64)
    parser.add_argument("--val", default="synthetic,num=100,size=96x320,split=val,lidar=false")
    parser.add_argument("--val-num", type=int, default=100)
    parser.add_argument("--methods", nargs="+", default=list(CALIBRATION_METHODS), choices=list(CALIBRATION_METHODS))
    parser.add_argument("--ops", nargs="+", default=list(INT8_OPS), choices=list(INT8_OPS))
    parser.add_argument("--litert", action="store_true", help="add a full-integer LiteRT row per model (minmax)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100, help="timed runs per file, in --rounds interleaved rounds")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    size = parse_size(args.size, "--size")  # every option checked before the first export
    check_timing(args.runs, 0, args.threads, "--")
    for option in ("calib_num", "val_num", "rounds"):
        check_number(getattr(args, option), "--" + option.replace("_", "-"), integer=True, low=1)
    for model in args.models:
        check_model_spec(model, "--models: ", load=True)  # a corrupt checkpoint fails before the header
    print(f"int8 static quantization (ONNX Runtime QDQ; LiteRT: ai-edge-quantizer) at {size[0]}x{size[1]}, "
          f"{args.calib_num} calibration images of {args.calib}, scored on {args.val_num} of {args.val}; "
          f"{args.threads} threads, median of {args.runs} interleaved runs per file, CPU {cpu_model()}\n", flush=True)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, model in enumerate(args.models):
            stem = Path(tmp) / f"{k}-{Path(model).name}"
            cases = [("onnx", o, m) for o in args.ops for m in args.methods]
            cases += [("litert", "all", "minmax")] if args.litert else []
            files: dict[str, list[Path]] = {"onnx": [], "litert": []}
            reports = []
            for fmt, ops, method in cases:
                suffix = ".tflite" if fmt == "litert" else ".onnx"
                if not files[fmt]:  # the fp32 file every int8 one is timed against
                    files[fmt].append(Path(f"{stem}-fp32{suffix}"))
                    export_model(model, files[fmt][0], ExportSettings(fmt, size, threads=args.threads))
                out = Path(f"{stem}-{ops}-{method}{suffix}")
                report = export_model(model, out, ExportSettings(
                    fmt, size, int8=True, calib=args.calib, calib_num=args.calib_num, calib_method=method,
                    int8_ops=ops, val=args.val, val_num=args.val_num, threads=args.threads))["int8"]
                files[fmt].append(out)
                reports.append((fmt, ops, method, report))
                print(f"  {model}: {fmt} {ops} {method} quantized and scored", flush=True)
            latency = {}
            for fmt, paths in files.items():
                if paths:
                    runtime = "litert" if fmt == "litert" else "ort"
                    print(f"  {model}: timing {len(paths)} {fmt} files interleaved", flush=True)
                    latency[fmt] = time_files(paths, runtime, size, threads=args.threads, runs=args.runs,
                                              rounds=args.rounds)
            seen = {"onnx": 0, "litert": 0}
            for fmt, ops, method, report in reports:
                seen[fmt] += 1
                f, q = report["fp32"], report["int8"]
                fp32_ms, int8_ms = latency[fmt][0]["median_ms"], latency[fmt][seen[fmt]]["median_ms"]
                label = "LiteRT full integer" if fmt == "litert" else f"ORT {ops}"
                lines.append(f"| {model} | {label} | {method} | {f['d1']:.4f} | {q['d1']:.4f} | "
                             f"{report['delta1_change_points']:+.2f} | {f['abs_rel']:.4f} / {q['abs_rel']:.4f} | "
                             f"{f['rmse']:.3f} / {q['rmse']:.3f} | {fp32_ms:.2f} | {int8_ms:.2f} | "
                             f"{fp32_ms / int8_ms:.2f}x |")
    print("\n| model | int8 | calibration | δ1 fp32 | δ1 int8 | Δδ1 (points) | AbsRel fp32 / int8 | RMSE fp32 / int8 "
          "| fp32 ms | int8 ms | speed-up |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(run_script(main))
