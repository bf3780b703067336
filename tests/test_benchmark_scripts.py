"""Every benchmark script ends bad input with one ``error:`` line and a non-zero exit, never a
traceback: here every script that takes ``--size``, given sizes that cannot be read (each run in
this process with its ``__main__`` block, as ``python benchmarks/SCRIPT.py`` runs it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import run_script_main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: (script, its size option) for every benchmark script that takes one
SIZED = sorted((p, flag) for p in BENCHMARKS.glob("*.py") for flag in ("--size", "--sizes")
               if re.search(rf'add_argument\(\s*"{flag}"', p.read_text()))


def test_the_scripts_that_take_a_size_are_found() -> None:
    found = {(p.stem, flag) for p, flag in SIZED}
    assert {("synth_speed", "--size"), ("frame_detail", "--size"), ("distill_study", "--size"),
            ("zoo_cost", "--sizes"), ("deploy_latency", "--sizes")} <= found
    assert "compression_study" not in {stem for stem, _ in found}  # it only passes --size on


#: what a script needs besides the size to reach its size check
BESIDES = {"sim_to_real": ["--flat-prior"]}


@pytest.mark.parametrize("size", ["4xbad", "0x64", "64", "8x-16", "64x99999", "nan"])
@pytest.mark.parametrize(("path", "flag"), SIZED, ids=lambda v: v.stem if isinstance(v, Path) else v)
def test_a_size_that_cannot_be_read_is_one_error_line_before_any_work(monkeypatch, capsys, tmp_path, path, flag,
                                                                       size) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a script would write lands here, not in the repository
    sizes = ["32x64", size] if flag == "--sizes" else [size]  # a good size first: every one is checked up front
    code, out, err = run_script_main(monkeypatch, capsys, path, *BESIDES.get(path.stem, []), flag, *sizes)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], err
    assert out == "" and not any(tmp_path.iterdir())  # refused before any work
