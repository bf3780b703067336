"""Where ONNX Runtime spends its time: op-type and node profile of exported models, and what the
export's layout pass (``slimdepth.deploy.onnx_layout``) buys, timed side by side.

For each model, the export as slimdepth writes it and the same graph with the layout barrier
removed are (1) profiled with ORT's own profiler (per-op share of the kernel time, and the
slowest nodes with their output shapes) and (2) timed in their own worker processes,
interleaved round by round, with the ratio printed. Profiling adds overhead, so its per-run
milliseconds are larger than the timed medians; read its shares, not its absolute times.

    python benchmarks/ort_profile.py --models litedepth-released litedepth --size 480x640
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from slimdepth.deploy.export import ExportSettings, export_model
from slimdepth.deploy.latency import check_timing
from slimdepth.deploy.machine import cpu_model
from slimdepth.deploy.onnx_layout import remove_planar_barriers
from slimdepth.deploy.workers import time_files
from slimdepth.errors import OneLineArgumentParser, run_script
from slimdepth.loader import check_model_spec
from slimdepth.options import check_number, parse_size


def profile(path: Path, size: tuple[int, int], threads: int, runs: int, top: int) -> None:
    """Print the op-type shares and the ``top`` slowest nodes of ``path`` under ORT's profiler."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    for _ in range(runs):
        session.run(None, {"image": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    shapes = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
            by_node[event["name"]] += event["dur"]
            shapes[event["name"]] = (event["args"]["op_name"], event["args"].get("output_type_shape"))
    total = sum(by_op.values())
    print(f"  kernel time {total / runs / 1000:.2f} ms/run under the profiler; by op type:")
    for op, us in by_op.most_common(8):
        print(f"    {op:26s} {100 * us / total:5.1f}%  {us / runs / 1000:6.3f} ms")
    print("  slowest nodes:")
    for name, us in by_node.most_common(top):
        op, shape = shapes[name]
        print(f"    {us / runs / 1000:6.3f} ms  {op:14s} out {shape}  {name.removesuffix('_kernel_time')[:70]}")


def main() -> None:
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["litedepth-released", "litedepth"])
    parser.add_argument("--size", default="480x640")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per file (profiling: the same count)")
    parser.add_argument("--top", type=int, default=6)
    args = parser.parse_args()
    size = parse_size(args.size, "--size")  # every option checked before the first export
    check_timing(args.runs, 0, args.threads, "--")
    check_number(args.top, "--top", integer=True, low=1)
    for model in args.models:
        check_model_spec(model, "--models: ", load=True)  # a corrupt checkpoint fails before the header
    print(f"ONNX Runtime {ort.__version__}, {args.threads} threads, batch 1, {size[0]}x{size[1]}, "
          f"CPU {cpu_model()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            shipped = Path(tmp) / f"{Path(model).name}.onnx"
            export_model(model, shipped, ExportSettings("onnx", size))
            plain_proto = onnx.load(str(shipped))
            removed = remove_planar_barriers(plain_proto)
            plain = Path(tmp) / f"{Path(model).name}-plain.onnx"
            onnx.save(plain_proto, str(plain))
            for label, path in (("as exported", shipped), ("without the layout pass", plain)):
                print(f"{model}, {label}:")
                profile(path, size, args.threads, args.runs, args.top)
            if removed:
                shipped_t, plain_t = time_files([shipped, plain], "ort", size, threads=args.threads, runs=args.runs)
                print(f"  timed, interleaved in own processes: {shipped_t['median_ms']:.2f} ms as exported, "
                      f"{plain_t['median_ms']:.2f} ms without the pass "
                      f"({plain_t['median_ms'] / shipped_t['median_ms']:.2f}x)\n")


if __name__ == "__main__":
    sys.exit(run_script(main))
