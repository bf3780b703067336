"""What the final upsample costs: nearest against bilinear, in accuracy and in deployed latency.

LiteDepth predicts depth at 1/4 of its internal size and resizes it to the input size; the
released network uses a nearest resize (cheaper on phones), slimdepth's default a bilinear one.
The choice changes the output, so it is the user's, with both sides measured here:

* **accuracy** -- one trained checkpoint scored twice on the same frames, its final resize
  switched between bilinear and nearest (the weights are the same; only the last op differs);
* **latency** -- ``litedepth-released`` exported to ONNX with each final resize, timed under
  ONNX Runtime in their own processes, interleaved round by round.

    slimdepth train configs/quickstart.yaml --out runs/quickstart
    python benchmarks/final_upsample.py --checkpoint runs/quickstart \\
        --data synthetic,num=100,size=96x320,split=val,lidar=false --size 480x640
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from slimdepth.data.registry import build_dataset
from slimdepth.deploy.export import ExportSettings, export_model
from slimdepth.deploy.latency import check_timing
from slimdepth.deploy.machine import cpu_model
from slimdepth.deploy.workers import time_files
from slimdepth.errors import OneLineArgumentParser, run_script
from slimdepth.evaluate.loop import evaluate_model
from slimdepth.loader import load_model
from slimdepth.models.checkpoint import model_input_size
from slimdepth.models.zoo import build_model
from slimdepth.options import parse_size


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/quickstart")
    parser.add_argument("--data", default="synthetic,num=100,size=96x320,split=val,lidar=false")
    parser.add_argument("--size", default="480x640", help="input size of the latency comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    size = parse_size(args.size, "--size")  # checked before the accuracy pass
    check_timing(args.runs, 0, args.threads, "--")
    model = load_model(args.checkpoint)
    dataset = build_dataset(args.data)
    print(f"accuracy: {args.checkpoint} on {len(dataset)} frames of {args.data}\n")
    print("| final resize | δ1 | AbsRel | RMSE |")
    print("| --- | ---: | ---: | ---: |")
    for mode in ("bilinear", "nearest"):
        model.upsample = mode
        m = evaluate_model(model, dataset, input_size=model_input_size(model)).metrics
        print(f"| {mode} | {m['d1']:.4f} | {m['abs_rel']:.4f} | {m['rmse']:.3f} |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for mode in ("bilinear", "nearest"):
            paths.append(Path(tmp) / f"{mode}.onnx")
            export_model(build_model("litedepth-released", upsample=mode), paths[-1], ExportSettings("onnx", size))
        bilinear, nearest = time_files(paths, "ort", size, threads=args.threads, runs=args.runs)
    print(f"\nlatency: litedepth-released at {size[0]}x{size[1]}, ONNX Runtime, {args.threads} threads, "
          f"median of {args.runs} interleaved runs, CPU {cpu_model()}")
    print(f"bilinear {bilinear['median_ms']:.2f} ms, nearest {nearest['median_ms']:.2f} ms "
          f"(nearest {bilinear['median_ms'] / nearest['median_ms']:.2f}x as fast)")


if __name__ == "__main__":
    sys.exit(run_script(main))
