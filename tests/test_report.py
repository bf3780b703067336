"""``slimdepth report``: one row per model with the recorded numbers, images that decode (and load
in a real browser), the Markdown table, real KITTI frames, and one-line errors on bad input."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from slimdepth.deploy.bench import RUNTIMES
from slimdepth.report import write_report
from slimdepth.report.real import REAL_SHEET_WIDTH
from slimdepth.train.run import resolve_config
from slimdepth.train.trainer import Trainer
from tests.helpers import TINY_RECIPE, assert_one_line_error, run_cli

TINY = TINY_RECIPE
#: the evaluate stage's rows of the hand-made pipeline (both models are the student's checkpoint)
ROWS = [
    {"name": "student", "stage": "student", "runtime": "torch", "params": 271092, "macs": 8_000_000, "size_mb": 1.09,
     "latency_ms": 3.25, "latency_p90_ms": 3.5, "predicted_ms": None, "d1": 0.5, "abs_rel": 0.25, "rmse": 4.5},
    {"name": "onnx", "stage": "export", "runtime": "ort", "params": None, "macs": None, "size_mb": 1.01,
     "latency_ms": 1.75, "latency_p90_ms": 2.0, "predicted_ms": 1.6, "d1": 0.625, "abs_rel": 0.125, "rmse": 3.5},
]
BUDGET_MS = 2.5


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real (tiny) training run: 4 steps of tiny-multires at 32x96."""
    out = tmp_path_factory.mktemp("runs") / "tiny<run>&"  # a name the page must escape
    Trainer(resolve_config(None, [], TINY), out).fit()
    return out


@pytest.fixture(scope="module")
def pipeline(run, tmp_path_factory) -> Path:
    """A pipeline directory in the layout ``slimdepth pipeline`` writes, around the tiny run."""
    root = tmp_path_factory.mktemp("pipe") / "pipe"
    shutil.copytree(run, root / "student")
    (root / "evaluate").mkdir()
    rows = [{**r, "path": "student/checkpoints/best.safetensors"} for r in ROWS]
    (root / "evaluate" / "results.json").write_text(json.dumps(
        {"runtime_threads": 2, "size": [32, 96], "cpu": "test", "budget_ms": BUDGET_MS, "rows": rows}))
    stages = {"student": {"status": "done", "run": str(root / "student"), "given": False, "kind": "train", "summary": {}},
              "export": {"status": "done", "run": str(root / "export"), "given": False, "kind": "export", "summary": {}}}
    (root / "pipeline.json").write_text(json.dumps(
        {"budget_ms": BUDGET_MS, "runtime": "ort", "size": [32, 96], "threads": 2, "stages": stages}))
    (root / "pipeline.yaml").write_text("budget_ms: 2.5\nruntime: ort\n")
    return root


class _Page(HTMLParser):
    """Tables (by id: rows of (text, data-value) cells), image sources, details summaries, all text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None]]]] = {}
        self.images: list[str] = []
        self.summaries: list[str] = []
        self._table: str | None = None
        self._in_body = False
        self._cell: list | None = None
        self._summary: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = ["", a.get("data-value")]
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "summary":
            self._summary = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append((self._cell[0], self._cell[1]))
            self._cell = None
        elif tag == "summary" and self._summary is not None:
            self.summaries.append("".join(self._summary))
            self._summary = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[0] += data
        if self._summary is not None:
            self._summary.append(data)


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def decode_png(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,")
    raw = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image


@pytest.fixture(scope="module")
def html_report(run, pipeline, tmp_path_factory) -> Path:
    """The HTML report of the run and the pipeline (read by the content and the browser tests)."""
    return write_report([run, pipeline], tmp_path_factory.mktemp("report") / "report.html")


def test_html_report_of_a_run_and_a_pipeline(run, html_report) -> None:
    out = html_report
    text = out.read_text(encoding="utf-8")
    page = parse(out)
    rows = page.tables["models"]
    assert [r[0][0] for r in rows] == [run.name, "student", "onnx"]  # one row per model
    # the run's row holds the run's best validation, exactly
    best = json.loads((run / "metrics.json").read_text())["best"]["metrics"]
    header = re.findall(r"<th>(.*?)</th>", text.split("</thead>")[0])
    col = {h: i for i, h in enumerate(header)}
    for key, name in (("d1", "δ1"), ("abs_rel", "AbsRel"), ("rmse", "RMSE (m)")):
        assert float(rows[0][col[name]][1]) == best[key]
        assert rows[0][col[name]][0] == f"{best[key]:.3f}"
        for row, recorded in zip(rows[1:], ROWS):  # the pipeline's rows hold what its evaluate stage measured
            assert float(row[col[name]][1]) == recorded[key]
    assert float(rows[1][col["torch (ms)"]][1]) == 3.25 and rows[1][col["ort (ms)"]][0] == "–"
    assert float(rows[2][col["ort (ms)"]][1]) == 1.75
    # counted here where the pipeline recorded nothing: the tiny model's parameters
    assert float(rows[2][col["params (M)"]][1]) == 271092 and float(rows[0][col["params (M)"]][1]) == 271092
    # pictures: 2 latency plots (torch, ort), 2 training curves (the run, the pipeline's student), 3 sample sheets
    assert len(page.images) == 7
    for src in page.images:
        assert decode_png(src).size[0] > 0
    assert "the latency budget, 2.5 ms on ort" in text
    # self-contained: no external resource, no script
    assert not re.search(r'(src|href)="(?!data:)', text) and "<script" not in text
    # settings of each stage, escaped names
    assert any(s.endswith("config.yaml") for s in page.summaries)
    assert "pipe/pipeline.yaml" in page.summaries
    assert "tiny&lt;run&gt;&amp;" in text and "tiny<run>" not in text


def test_markdown_table_from_the_cli(tmp_path, monkeypatch, capsys, run, pipeline) -> None:
    out = tmp_path / "table.md"
    code, stdout, err = run_cli(monkeypatch, capsys, "report", str(run), str(pipeline), "--format", "md", "--out", str(out))
    assert code == 0, err
    lines = out.read_text().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 3  # header, alignment, one row per model
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:5] == ["model", "kind", "params (M)", "GMACs", "size (MB)"]
    assert {"torch (ms)", "ort (ms)", "δ1", "AbsRel", "RMSE (m)"} <= set(header)
    best = json.loads((run / "metrics.json").read_text())["best"]["metrics"]
    first = [c.strip() for c in table[2].strip("|").split("|")]
    assert first[header.index("δ1")] == f"{best['d1']:.3f}" and first[header.index("RMSE (m)")] == f"{best['rmse']:.3f}"
    onnx = [c.strip() for c in table[4].strip("|").split("|")]
    assert onnx[0] == "onnx" and onnx[header.index("ort (ms)")] == "1.75" and onnx[header.index("AbsRel")] == "0.125"
    assert "data:image" not in out.read_text()
    assert "budget 2.5 ms on ort" in out.read_text()


def test_checkpoint_input_is_evaluated_and_timed(tmp_path, run) -> None:
    """A bare checkpoint recorded nothing: it is scored on its recipe's validation set and timed on torch."""
    out = write_report([run / "checkpoints" / "best.safetensors"], tmp_path / "r.html", runtimes=["torch"])
    page = parse(out)
    (row,) = page.tables["models"]
    assert row[0][0] == "best" and row[1][0] == "checkpoint"
    best = json.loads((run / "metrics.json").read_text())["best"]["metrics"]
    # the best checkpoint on the same validation images: the same numbers as the run recorded
    assert math.isclose(float(row[-4][1]), best["d1"], rel_tol=1e-6)
    assert "evaluated here on synthetic" in row[-1][0]
    assert float(row[5][1]) > 0  # torch latency, measured
    assert len(page.images) == 2  # the latency plot and the sample sheet (no run: no curves)


_COUNT_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var rows = document.querySelectorAll("#models tbody tr").length;
  var out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = "loaded=" + ok + " images=" + imgs.length + " rows=" + rows;
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_report_opens_in_a_real_browser(tmp_path, html_report) -> None:
    out = html_report
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text(encoding="utf-8").replace("</body>", _COUNT_SCRIPT + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
         "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=90)
    found = re.search(r"loaded=(\d+) images=(\d+) rows=(\d+)", result.stdout)
    assert found, result.stderr[-2000:]
    loaded, images, rows = map(int, found.groups())
    assert images == 7 and loaded == images  # every embedded image decodes in the browser
    assert rows == 3  # one table row per model


def test_real_kitti_frames(tmp_path, run, shared_data) -> None:
    out = write_report([run], tmp_path / "real.html", real=shared_data, real_num=2)
    page = parse(out)
    (row,) = page.tables["real-metrics"]
    assert row[0][0] == run.name
    values = [float(v) for _, v in row[1:]]
    assert len(values) == 6 and all(math.isfinite(v) for v in values)
    d1_scaled, d1_metric = values[0], values[3]
    assert 0.0 <= d1_metric <= 1.0 and 0.0 <= d1_scaled <= 1.0
    # curves, samples, and one real-frame sheet (image | prediction | LiDAR | error, 2 rows) last
    assert len(page.images) == 3 and decode_png(page.images[-1]).size[0] == REAL_SHEET_WIDTH
    assert "2 KITTI frames" in out.read_text() and "projected Velodyne" in out.read_text()
    md = write_report([run], tmp_path / "real.md", fmt="md", real=shared_data, real_num=2)
    assert "δ1 median-scaled" in md.read_text()


class TestBadInput:
    """Every bad input is one line on stderr and a non-zero exit, before any model is measured."""

    def test_missing_path(self, tmp_path, monkeypatch, capsys) -> None:
        code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "nope", "no such file")

    def test_directory_that_is_neither_run_nor_pipeline(self, tmp_path, monkeypatch, capsys) -> None:
        (tmp_path / "stuff").mkdir()
        (tmp_path / "stuff" / "notes.txt").write_text("hello")
        code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "stuff"), "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "stuff", "neither a run directory")

    def test_unrelated_file(self, tmp_path, monkeypatch, capsys) -> None:
        (tmp_path / "notes.txt").write_text("hello")
        code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "notes.txt")

    def test_existing_output_is_never_replaced(self, tmp_path, monkeypatch, capsys, run) -> None:
        out = tmp_path / "mine.html"
        out.write_text("my own page")
        code, _, err = run_cli(monkeypatch, capsys, "report", str(run), "--out", str(out))
        assert_one_line_error(code, err, "mine.html", "--overwrite")
        assert out.read_text() == "my own page"

    def test_suffix_must_match_the_format(self, tmp_path, monkeypatch, capsys, run) -> None:
        code, _, err = run_cli(monkeypatch, capsys, "report", str(run), "--format", "md", "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "r.html", ".md")

    def test_bad_real_folder(self, tmp_path, monkeypatch, capsys, run) -> None:
        code, _, err = run_cli(monkeypatch, capsys, "report", str(run), "--real", str(tmp_path / "nope"),
                               "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "--real", "nope")
        (tmp_path / "empty").mkdir()
        code, _, err = run_cli(monkeypatch, capsys, "report", str(run), "--real", str(tmp_path / "empty"),
                               "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "empty", "no KITTI frames")
        assert not (tmp_path / "r.html").exists()

    def test_bad_pipeline_results(self, tmp_path, monkeypatch, capsys, pipeline) -> None:
        broken = tmp_path / "pipe"
        shutil.copytree(pipeline, broken)
        (broken / "evaluate" / "results.json").write_text("{not json")
        code, _, err = run_cli(monkeypatch, capsys, "report", str(broken), "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "results.json", "JSON")

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(fmt=st.text(min_size=1, max_size=12).filter(lambda s: s not in ("html", "md") and not s.startswith("-")
                                                         and "\x00" not in s))
    def test_unknown_format(self, tmp_path, monkeypatch, capsys, fmt) -> None:
        code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path), "--format", fmt,
                               "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "--format")

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
           .filter(lambda s: s not in RUNTIMES))
    def test_unknown_runtime(self, tmp_path, monkeypatch, capsys, name) -> None:
        code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path), "--runtime", f"torch,{name}",
                               "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "unknown runtime", name)

    @pytest.mark.parametrize("value", ["0", "-3"])
    def test_real_num_must_be_positive(self, tmp_path, monkeypatch, capsys, value) -> None:
        code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path), "--real-num", value,
                               "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "--real-num")

    def test_bad_size(self, tmp_path, monkeypatch, capsys, run) -> None:
        code, _, err = run_cli(monkeypatch, capsys, "report", str(run), "--size", "big",
                               "--out", str(tmp_path / "r.html"))
        assert_one_line_error(code, err, "--size")
