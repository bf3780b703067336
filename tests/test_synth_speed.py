"""benchmarks/synth_speed.py: the per-part timing prints every part and their sum; bad
arguments end it with a one-line error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import run_script_main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "synth_speed.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_parts_prints_each_part_of_a_frame_and_their_sum():
    out = _run("--parts", "--frames", "2", "--size", "32x96")
    assert out.returncode == 0, out.stderr
    rows = dict(re.findall(r"^(\w[\w ()]*?)\s+([\d.]+) ms", out.stdout, re.M))
    parts = ["scene", "camera settings", "ray casting", "shading", "camera model", "labels", "lidar"]
    assert list(rows)[:-1] == parts and list(rows)[-1] == "sum", out.stdout
    values = [float(rows[p]) for p in parts]
    assert all(v > 0 for v in values)
    assert abs(sum(values) - float(rows["sum"])) < 0.01 * len(parts)  # printed to 0.01 ms each


def test_bad_arguments_end_with_one_line(monkeypatch, capfd):
    out = _run("--parts", "--frames", "0")  # in a new interpreter, as a user runs it
    assert out.returncode != 0 and out.stderr.strip().count("\n") == 0 and "error" in out.stderr, out.stderr
    # counts and sizes are in tests/test_benchmark_scripts.py's class test with every other script
    for args in (["--option", "traffic=lots"], ["--against", "/nonexistent"]):
        code, _, err = run_script_main(monkeypatch, capfd, SCRIPT, *args)
        assert code != 0 and err.strip().count("\n") == 0 and "error" in err, (args, err)
