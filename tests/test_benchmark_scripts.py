"""Every benchmark script ends bad input with one ``error:`` line and a non-zero exit, before any
work, never a traceback: unknown options, counts and sizes that cannot be used (each script run
in this process with its ``__main__`` block, as ``python benchmarks/SCRIPT.py`` runs it), and
no script prints anything when a new interpreter imports it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_script_main

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))
#: (script, its size option) for every benchmark script that takes one
SIZED = sorted((p, flag) for p in SCRIPTS for flag in ("--size", "--sizes")
               if re.search(rf'add_argument\(\s*"{flag}"', p.read_text()))
#: what a script needs besides the option under test to reach its checks
BESIDES = {"sim_to_real": ["--flat-prior"]}
#: bad values of each script's own options (the class: counts below their floor, words for numbers,
#: values outside a choice, malformed MODEL=VALUE pairs)
BAD_OPTIONS = {
    "camera_speed": [["--frames=0"], ["--frames=x"]],
    "compression_study": [["--steps", "litedepth=abc"], ["--steps", "nomodel=5"], ["--steps", "litedepth=0"],
                          ["--base", "litedepth"], ["--base", "litedepth=/no/such/run"], ["--steps", "litedepth=²"],
                          ["--targets", "1.5"], ["--targets", "nan"], ["--latency-runs=0"],
                          ["--threads=0"], ["--models", "vgg"]],
    "deploy_latency": [["--runs=0"], ["--warmup=-1"], ["--threads=0"], ["--rounds=0"], ["--threads=x"],
                       ["--models", "litedepth", "/no/such/run"]],
    "distill_study": [["--steps=0"], ["--batch=-1"], ["--teacher-steps=0"], ["--workers=-1"], ["--threads=0"],
                      ["--labeled=x"], ["--unlabeled=0"], ["--rows", "nothing"], ["--device", "bogus"],
                      ["--steps=1"], ["--rows", "stereo_teacher_kd"], ["--rows", "stereo_teacher_kd", "stereo_teacher"]],
    "final_upsample": [["--runs=0"], ["--threads=0"], ["--threads=1e3"]],
    "int8_study": [["--runs=0"], ["--calib-num=0"], ["--val-num=0"], ["--methods", "kl"], ["--ops", "matmul"],
                   ["--rounds=0"], ["--threads=0"], ["--models", "/no/such/run"]],
    "ort_profile": [["--runs=0"], ["--top=0"], ["--threads=x"], ["--models", "litedepth", "/no/such/run"]],
    "sim_to_real_study": [["--jobs=0"], ["--variants", "fog"], ["--set", "train.epochs=abc"],
                          ["--set", "train.epochs=10.5"]],
    "synth_speed": [["--frames=0"], ["--workers=-1"], ["--rounds=x"], ["--rounds=0"]],
    "train_speed": [["--batch=0"], ["--batch=2000"], ["--rounds=0"], ["--steps=x"], ["--threads=0"],
                    ["--models", "vgg"], ["--models", ","], ["--recipe", "no/such.yaml"], ["--recipe", "README.md"]],
    "zoo_cost": [["--threads=0"], ["--budget=0"], ["--budget=nan"], ["--batch=0"]],
}


def _refused(monkeypatch, capfd, tmp_path: Path, path: Path, *args: str) -> str:
    """Run ``path`` with ``args`` in ``tmp_path``; check it ended with one error line, wrote and
    printed nothing else; return that line."""
    monkeypatch.chdir(tmp_path)  # whatever a script would write lands here, not in the repository
    code, out, err = run_script_main(monkeypatch, capfd, path, *BESIDES.get(path.stem, []), *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert out == "" and not any(tmp_path.iterdir())  # refused before any work
    return lines[0]


def test_the_scripts_and_their_options_are_found() -> None:
    found = {(p.stem, flag) for p, flag in SIZED}
    assert {("synth_speed", "--size"), ("frame_detail", "--size"), ("distill_study", "--size"),
            ("zoo_cost", "--sizes"), ("deploy_latency", "--sizes")} <= found
    assert "compression_study" not in {stem for stem, _ in found}  # it only passes --size on
    assert set(BAD_OPTIONS) <= {p.stem for p in SCRIPTS}


@pytest.mark.parametrize("size", ["4xbad", "0x64", "64", "8x-16", "64x99999", "nan"])
@pytest.mark.parametrize(("path", "flag"), SIZED, ids=lambda v: v.stem if isinstance(v, Path) else v)
def test_a_size_that_cannot_be_read_is_one_error_line_before_any_work(monkeypatch, capfd, tmp_path, path, flag,
                                                                       size) -> None:
    sizes = ["32x64", size] if flag == "--sizes" else [size]  # a good size first: every one is checked up front
    assert flag in _refused(monkeypatch, capfd, tmp_path, path, flag, *sizes)


@pytest.mark.parametrize(("path", "args"), [(BENCHMARKS / f"{name}.py", args) for name, cases in BAD_OPTIONS.items()
                                            for args in cases], ids=lambda v: v.stem if isinstance(v, Path) else " ".join(v))
def test_a_bad_option_value_is_one_error_line_before_any_work(monkeypatch, capfd, tmp_path, path, args) -> None:
    option = args[0].split("=")[0]
    line = _refused(monkeypatch, capfd, tmp_path, path, *args)
    assert option in line or (path.stem, option) in {("sim_to_real_study", "--variants")}, line


#: the scripts that export the checkpoints they are given: a corrupt one is refused before their header
EXPORTING = ["deploy_latency", "int8_study", "ort_profile"]
#: ways a checkpoint can be broken: (which file, what is done to it)
BROKEN_CHECKPOINTS = {
    "weights cut in half": (".safetensors", lambda b: b[: len(b) // 2]),
    "weights empty": (".safetensors", lambda b: b""),
    "sidecar cut": (".json", lambda b: b[: len(b) // 3]),
    "sidecar not JSON": (".json", lambda b: b"\x00\xff not json"),
    "sidecar of an unknown model": (".json", lambda b: b.replace(b'"tiny-multires"', b'"no-such-net"')),
}


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    from slimdepth.models import save_model
    from slimdepth.models.zoo import build_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(build_model("tiny-multires"), path, metadata={"input_size": [32, 64]})
    return path


@pytest.mark.parametrize("broken", sorted(BROKEN_CHECKPOINTS))
@pytest.mark.parametrize("script", EXPORTING)
def test_a_corrupt_checkpoint_is_one_error_line_before_any_work(monkeypatch, capfd, tmp_path, tmp_path_factory,
                                                                 small_checkpoint, script, broken) -> None:
    folder = tmp_path_factory.mktemp("broken")
    for suffix in (".safetensors", ".json"):
        (folder / f"c{suffix}").write_bytes(small_checkpoint.with_suffix(suffix).read_bytes())
    suffix, damage = BROKEN_CHECKPOINTS[broken]
    target = folder / f"c{suffix}"
    target.write_bytes(damage(target.read_bytes()))
    assert target.read_bytes() != small_checkpoint.with_suffix(suffix).read_bytes()
    line = _refused(monkeypatch, capfd, tmp_path, BENCHMARKS / f"{script}.py", "--models", str(folder / "c.safetensors"))
    assert line.startswith("error: --models: ") and target.name in line, line


@pytest.mark.parametrize("metrics", [None, "", "{not json", "[]", '{"validation": []}'])
def test_distill_study_distills_only_from_a_finished_stereo_teacher(monkeypatch, capfd, tmp_path, tmp_path_factory,
                                                                    metrics) -> None:
    """An earlier stereo teacher under --out counts only when its run finished: a missing, cut,
    foreign or empty metrics.json is refused in one line, not a traceback or a half-trained teacher."""
    out = tmp_path_factory.mktemp("study")
    run = out / "runs" / "stereo_teacher"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.state.json").write_text("{}")
    (run / "checkpoints" / "last.safetensors").write_bytes(b"")
    if metrics is not None:
        (run / "metrics.json").write_text(metrics)
    line = _refused(monkeypatch, capfd, tmp_path, BENCHMARKS / "distill_study.py", "--out", str(out),
                    "--rows", "stereo_teacher_kd")
    assert "--rows: stereo_teacher_kd distills from the stereo_teacher row's model" in line


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_an_unknown_option_is_one_error_line(monkeypatch, capfd, tmp_path, path) -> None:
    assert "--no-such-option" in _refused(monkeypatch, capfd, tmp_path, path, "--no-such-option")


def test_a_new_interpreter_imports_every_script_silently() -> None:
    """What only a real process shows: anything a script prints (a warning, a log line) when it is
    imported. One interpreter imports them all, as modules, so no script's main runs."""
    code = ("import importlib.util, sys\n"
            "for p in sys.argv[1:]:\n"
            "    spec = importlib.util.spec_from_file_location('bench_' + p.rsplit('/', 1)[-1][:-3], p)\n"
            "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, SCRIPTS)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc.stderr[-2000:]
