"""slimdepth bench: models on runtimes, each in its own process, interleaved, with speed-ups."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slimdepth.deploy import workers
from slimdepth.deploy.bench import RUNTIMES, bench, parse_runtimes
from slimdepth.errors import ConfigError, DataError
from tests.helpers import assert_one_line_error, run_cli


def test_bench_times_a_zoo_model_on_torch_and_ort_and_an_exported_file(tmp_path) -> None:
    from slimdepth.deploy.export import ExportSettings, export_model

    path = tmp_path / "m.onnx"
    export_model("litedepth-released", path, ExportSettings("onnx", (32, 64)))
    rows = bench(["litedepth-released", str(path)], ["torch", "ort", "openvino"], (32, 64), threads=1, runs=4,
                 warmup=1, rounds=2)
    table = {(r.model, r.runtime): r for r in rows}
    assert len(rows) == 6
    for runtime in ("torch", "ort", "openvino"):
        row = table["litedepth-released", runtime]
        assert row.runs == 4 and 0 < row.min_ms <= row.median_ms <= row.p90_ms
    torch_ms = table["litedepth-released", "torch"].median_ms
    assert table["litedepth-released", "ort"].speedup_vs_torch == pytest.approx(torch_ms / table["litedepth-released", "ort"].median_ms)
    assert table[str(path), "torch"].median_ms is None and "no PyTorch model" in table[str(path), "torch"].note
    assert table[str(path), "ort"].runs == 4 and table[str(path), "ort"].speedup_vs_torch is None


def test_bench_quantizes_for_the_int8_runtimes_and_times_them_with_the_fp32_files(tmp_path,
                                                                                 reuse_litert_conversion) -> None:
    """A checkpoint on both int8 runtimes; its LiteRT conversion is the tests' shared one
    (tests/conftest.py), parity-checked against this checkpoint by bench's export."""
    import ai_edge_quantizer  # noqa: F401 - part of the dev install: CI must run this, never skip it
    rows = bench([str(reuse_litert_conversion.checkpoint)], ["ort", "ort-int8", "litert", "litert-int8"], (64, 128),
                 threads=1, runs=3, warmup=1, rounds=1)
    table = {r.runtime: r for r in rows}
    assert [r.note for r in rows] == ["", "", "", ""]
    assert {k: r.file.rsplit("/", 1)[-1] for k, r in table.items()} == {
        "ort": "model.onnx", "ort-int8": "int8.onnx", "litert": "model.tflite", "litert-int8": "int8.tflite"}
    assert all(r.runs == 3 and r.median_ms > 0 for r in rows)


def test_bench_cli_writes_json_csv_and_a_plot(tmp_path, monkeypatch, capsys) -> None:
    out = {s: tmp_path / f"b.{s}" for s in ("json", "csv", "png")}
    code, stdout, err = run_cli(monkeypatch, capsys, "bench", "tiny-multires", "--runtime", "torch,ort", "--size", "32x64",
                                "--threads", "1", "--runs", "3", "--warmup", "1", "--rounds", "3", "--json",
                                str(out["json"]), "--csv", str(out["csv"]), "--plot", str(out["png"]))
    assert code == 0, err
    rows = json.loads(out["json"].read_text())["rows"]
    assert [r["runtime"] for r in rows] == ["torch", "ort"] and rows[0]["speedup_vs_torch"] == pytest.approx(1.0)
    assert [r["runtime"] for r in csv.DictReader(out["csv"].open())] == ["torch", "ort"]
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "x torch" in stdout


@given(st.text(min_size=1, max_size=12).filter(lambda s: all(p.strip() not in RUNTIMES for p in s.split(","))))
def test_unknown_runtimes_are_refused(name) -> None:
    with pytest.raises(ConfigError):
        parse_runtimes(name)


def test_runtime_lists_keep_order_without_repeats() -> None:
    assert parse_runtimes("ort, torch,ort") == ["ort", "torch"]


@pytest.mark.parametrize(("args", "fragment"), [
    (["--runtime", "tensorrt"], "unknown runtime 'tensorrt'"),
    (["--runs", "0"], "--runs"),
    (["--threads", "0"], "--threads"),
    (["--size", "12"], "--size"),
    (["--json", "x.txt"], "must end with .json"),
    (["--calib", "synthetic"], "--calib is for --runtime ort-int8 or litert-int8"),
    (["--runtime", "ort,litert", "--calib", "synthetic"], "--calib is for --runtime ort-int8 or litert-int8"),
])
def test_bench_cli_refuses_bad_options_in_one_line(tmp_path, monkeypatch, capsys, args, fragment) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("slimdepth.deploy.bench.runtime_artefacts", lambda *a, **k: pytest.fail("the work started"))
    code, _, err = run_cli(monkeypatch, capsys, "bench", "litedepth", *args)
    assert_one_line_error(code, err, fragment)


#: a stand-in worker that logs 1 MB on stderr (16 times what a pipe holds) before each answer, as a
#: chatty runtime does; with "fail" in its spec it dies after logging, its last line the reason
CHATTY_WORKER = textwrap.dedent("""
    import json, sys
    spec = json.loads(sys.stdin.readline())
    sys.stderr.write(("runtime chatter " * 64 + "\\n") * 1024)
    if spec.get("fail"):
        sys.stderr.write("RuntimeError: could not load the model\\n")
        sys.exit(1)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        sys.stderr.write(("runtime chatter " * 64 + "\\n") * 1024)
        print(json.dumps({"samples": [1.0] * request["runs"]}), flush=True)
""")


def test_a_worker_that_logs_more_than_a_pipe_holds_neither_hangs_nor_hides_its_error(monkeypatch) -> None:
    monkeypatch.setattr(workers, "WORKER", [sys.executable, "-c", CHATTY_WORKER])
    spec = {"runtime": "ort", "path": "m.onnx", "size": [32, 64]}
    results: list = []
    thread = threading.Thread(target=lambda: results.append(workers.interleave_workers([spec, spec], 4, 2)), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "bench hung on a worker blocked writing to a full stderr pipe"
    assert results == [[[1.0] * 4, [1.0] * 4]]
    worker = workers.Worker({**spec, "fail": True})
    assert worker.error == "RuntimeError: could not load the model"
    assert worker.process.poll() is not None and worker.stderr.closed  # ended, and its stderr file gone


#: stand-in workers that fail at start in each way a process can: the error each must end in
BROKEN_WORKERS = {
    "exits before reading": ("import sys; sys.stderr.write('ImportError: no runtime here\\n'); sys.exit(3)",
                             "ImportError: no runtime here"),
    "dies after reading": ("import sys; sys.stdin.readline(); sys.exit(1)", "the worker process died"),
    "prints a banner": ("import sys; sys.stdin.readline(); print('loading the model ...', flush=True)",
                        "the worker answered 'loading the model ...', not a JSON object"),
    "answers a list": ("import sys; sys.stdin.readline(); print('[1, 2]', flush=True)",
                       "the worker answered '[1, 2]', not a JSON object"),
    "hangs": ("import sys, time; sys.stdin.readline(); time.sleep(120)", "the worker gave no answer in 1.5 s"),
}
#: how long each may take to start: a quick failure gets time for a slow interpreter start on a busy machine
READY_TIMEOUTS = {"hangs": 1.5}


@pytest.mark.parametrize("case", sorted(BROKEN_WORKERS))
def test_a_worker_that_fails_at_start_is_one_error_and_leaves_nothing_behind(monkeypatch, case) -> None:
    import time

    code, error = BROKEN_WORKERS[case]
    monkeypatch.setattr(workers, "WORKER", [sys.executable, "-c", code])
    start = time.perf_counter()
    timeout = READY_TIMEOUTS.get(case, 60.0)
    worker = workers.Worker({"runtime": "ort", "path": "m.onnx", "size": [32, 64]}, ready_timeout=timeout)
    assert worker.error == error
    assert worker.process.poll() is not None and worker.stderr.closed  # ended and reaped, its file deleted
    assert time.perf_counter() - start < 15
    monkeypatch.setattr(workers, "READY_TIMEOUT_S", timeout)  # the default, read when a Worker is made
    with pytest.raises(DataError) as info:
        workers.interleave_workers([{"runtime": "ort", "path": "m.onnx", "size": [32, 64]}], 2, 1)
    assert "\n" not in str(info.value) and "m.onnx on ort" in str(info.value) and error in str(info.value)


def test_a_worker_that_crashes_on_a_timing_request_is_one_error_naming_its_file(monkeypatch) -> None:
    """A worker that reads the request and dies: its answer is the end of its output."""
    code = ("import sys; sys.stdin.readline(); print('{\"ready\": true}', flush=True); sys.stdin.readline(); "
            "sys.stderr.write('RuntimeError: the runtime crashed\\n'); sys.exit(1)")
    monkeypatch.setattr(workers, "WORKER", [sys.executable, "-c", code])
    with pytest.raises(DataError) as info:
        workers.interleave_workers([{"runtime": "ort", "path": "m.onnx", "size": [32, 64]}], 2, 1)
    assert str(info.value) == "m.onnx on ort: benchmark worker failed: RuntimeError: the runtime crashed"


def test_a_worker_that_dies_before_a_timing_request_is_one_error_naming_its_file(monkeypatch) -> None:
    """A worker that answers ready and then exits: the next request meets a broken pipe (the worker
    is reaped first, so the pipe has no reader), and the error is its last stderr line, named."""
    code = ("import sys; sys.stdin.readline(); print('{\"ready\": true}', flush=True); "
            "sys.stderr.write('MemoryError: out of memory in the runtime\\n'); sys.exit(1)")
    monkeypatch.setattr(workers, "WORKER", [sys.executable, "-c", code])
    spec = {"runtime": "ort", "path": "m.onnx", "size": [32, 64]}
    worker = workers.Worker(spec)
    assert worker.error is None
    worker.process.wait(timeout=30)
    with pytest.raises(DataError, match="benchmark worker failed: MemoryError: out of memory in the runtime"):
        worker.time(2)
    worker.close()
    assert worker.stderr.closed and worker.process.stdin.closed and worker.process.stdout.closed
    original_time = workers.Worker.time

    def reaped_then_timed(self, runs, warmup=0):
        self.process.wait(timeout=30)  # dead before the request, as above
        return original_time(self, runs, warmup)

    monkeypatch.setattr(workers.Worker, "time", reaped_then_timed)
    with pytest.raises(DataError) as info:
        workers.interleave_workers([spec], 2, 1)
    assert str(info.value) == "m.onnx on ort: benchmark worker failed: MemoryError: out of memory in the runtime"


#: the real worker, its file runner replaced by one that prints while it loads and while it runs,
#: from Python and from "C" (straight to file descriptor 1), as runtimes do
CHATTY_RUNTIME = textwrap.dedent("""
    import os
    import slimdepth.deploy.bench_worker as worker

    def chatty_runner(spec):
        print("runtime banner")
        os.write(1, b"C library banner\\n")
        return lambda: print("a line per run")

    worker._file_runner = chatty_runner
    worker.main()
""")


def test_what_a_runtime_prints_on_stdout_goes_to_the_log_not_into_the_answers(monkeypatch) -> None:
    monkeypatch.setattr(workers, "WORKER", [sys.executable, "-c", CHATTY_RUNTIME])
    worker = workers.Worker({"runtime": "ort", "path": "m.onnx", "size": [8, 8], "threads": 1, "warmup": 2})
    try:
        assert worker.error is None
        samples = worker.time(3)
        assert len(samples) == 3 and all(s >= 0 for s in samples)
        worker.ask_to_quit()
        worker.process.wait(timeout=30)
        log = worker._stderr_tail()
    finally:
        worker.close()
    assert "runtime banner" in log and "C library banner" in log and log.count("a line per run") == 2 + 3


def test_a_worker_waits_for_its_spinning_threads_before_the_next_one_is_timed(tmp_path) -> None:
    """After its timed runs a worker sleeps settle_s before answering (ORT's and OpenMP's threads
    keep spinning after a run and slowed the next worker 2x on 2 cores); the runs themselves are
    timed without it. Without settle_s it waits SETTLE_S on two threads and not at all on one."""
    import time

    from slimdepth.deploy.bench_worker import SETTLE_S
    from slimdepth.deploy.export import ExportSettings, export_model

    path = tmp_path / "m.onnx"
    export_model("litedepth-released", path, ExportSettings("onnx", (32, 64)))
    spent = {}
    for case, threads, extra in (("asked 0", 1, {"settle_s": 0.0}), ("asked 0.6", 1, {"settle_s": 0.6}),
                                 ("default, 1 thread", 1, {}), ("default, 2 threads", 2, {})):
        worker = workers.Worker({"runtime": "ort", "path": str(path), "size": [32, 64], "threads": threads, "warmup": 1,
                                 **extra})
        start = time.perf_counter()
        samples = worker.time(2)
        spent[case] = time.perf_counter() - start
        worker.close()
        assert len(samples) == 2 and sum(samples) / 1000 < 0.5
    assert spent["asked 0.6"] >= 0.6 > spent["asked 0"]
    assert spent["default, 2 threads"] >= SETTLE_S > spent["default, 1 thread"], spent


def test_a_worker_on_one_thread_does_not_wait_by_default() -> None:
    """One thread has no pool left spinning after a run: no wait unless asked; more threads wait."""
    from slimdepth.deploy.bench_worker import SETTLE_S, settle_seconds

    assert SETTLE_S > 0
    assert settle_seconds({"threads": 1}) == 0.0 and settle_seconds({"threads": 2}) == SETTLE_S
    assert settle_seconds({"threads": 4}) == SETTLE_S and settle_seconds({"threads": 1, "settle_s": 0.3}) == 0.3
    assert settle_seconds({"threads": 2, "settle_s": 0}) == 0.0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.sampled_from([["--runtimes", "onnx"], ["--size", "0x96"], ["--size", "big"], ["--threads", "0"],
                            ["--threads", "x"], ["--workers", "0"], ["--rounds", "-2"], ["--repeats", "0"],
                            ["--runs", "0"], ["--model", "nothing"], ["--bogus"]]))
def test_worker_settle_benchmark_refuses_bad_options_in_one_line(bad, capsys) -> None:
    """Every bad option of benchmarks/worker_settle.py ends in one line and exit 2, before any timing
    (capsys is read, and so emptied, once per example)."""
    from pathlib import Path

    from tests.helpers import load_script

    script = load_script(Path(__file__).resolve().parents[1] / "benchmarks" / "worker_settle.py", "worker_settle_script")
    try:
        code = script.main(bad)
    except SystemExit as exc:  # argparse's own refusals (an unknown option, a non-integer)
        code = exc.code
    assert_one_line_error(code, capsys.readouterr().err)

