"""INT8 study: ONNX Runtime static quantization of trained models, per calibration method.

For each model (a run directory, a checkpoint or a zoo name), each calibration method (MinMax,
Entropy, Percentile) and each choice of quantized ops (``--int8-ops all``: every op ONNX Runtime
quantizes; ``conv``: the convolutions alone), ``slimdepth export --int8`` is run with the same calibration and
validation data, and its report is printed: delta1, AbsRel and RMSE of fp32 and int8 on the
validation frames, the change in delta1 points, and the latency of both under ONNX Runtime
(each timed in its own process, interleaved) with the int8 speed-up. The aims: at most 0.5
points of delta1 lost, at least 1.3x faster than fp32.

    slimdepth train configs/quickstart.yaml --out runs/quickstart
    python benchmarks/int8_study.py --models runs/quickstart resnet18-unet --size 96x320 \\
        --calib synthetic,num=200,size=96x320,lidar=false \\
        --val synthetic,num=100,size=96x320,split=val,lidar=false
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from slimdepth.deploy.export import ExportSettings, export_model
from slimdepth.deploy.machine import cpu_model
from slimdepth.deploy.quantize import CALIBRATION_METHODS, INT8_OPS
from slimdepth.options import parse_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["runs/quickstart", "resnet18-unet"])
    parser.add_argument("--size", default="96x320")
    parser.add_argument("--calib", default="synthetic,num=200,size=96x320,lidar=false")
    parser.add_argument("--calib-num", type=int, default=64)
    parser.add_argument("--val", default="synthetic,num=100,size=96x320,split=val,lidar=false")
    parser.add_argument("--val-num", type=int, default=100)
    parser.add_argument("--methods", nargs="+", default=list(CALIBRATION_METHODS))
    parser.add_argument("--ops", nargs="+", default=list(INT8_OPS))
    parser.add_argument("--litert", action="store_true", help="add a full-integer LiteRT row per model (minmax)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    size = parse_size(args.size)
    print(f"int8 static quantization (ONNX Runtime QDQ; LiteRT rows: ai-edge-quantizer) at {size[0]}x{size[1]}, {args.calib_num} calibration images of {args.calib}, "
          f"scored on {args.val_num} of {args.val}, {args.threads} threads, CPU {cpu_model()}\n")
    print("| model | ops | calibration | δ1 fp32 | δ1 int8 | Δδ1 (points) | AbsRel fp32 / int8 | RMSE fp32 / int8 "
          "| fp32 ms | int8 ms | speed-up |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            cases = [("onnx", o, m) for o in args.ops for m in args.methods] + ([("litert", "all", "minmax")] if args.litert else [])
            for fmt, ops, method in cases:
                out = Path(tmp) / f"{Path(model).name}-{ops}-{method}{'.tflite' if fmt == 'litert' else '.onnx'}"
                report = export_model(model, out, ExportSettings(
                    fmt, size, int8=True, calib=args.calib, calib_num=args.calib_num, calib_method=method,
                    int8_ops=ops, val=args.val, val_num=args.val_num, threads=args.threads))["int8"]
                f, q = report["fp32"], report["int8"]
                print(f"| {model} | {'LiteRT full integer' if fmt == 'litert' else ops} | {method} | {f['d1']:.4f} | {q['d1']:.4f} | {report['delta1_change_points']:+.2f} | "
                      f"{f['abs_rel']:.4f} / {q['abs_rel']:.4f} | {f['rmse']:.3f} / {q['rmse']:.3f} | "
                      f"{f['median_ms']:.2f} | {q['median_ms']:.2f} | {report['speedup']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
