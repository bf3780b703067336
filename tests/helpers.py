"""Helpers shared by the command-line tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from slimdepth.cli import main


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``slimdepth ARGS`` in this process; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["slimdepth", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def write_recipe_file(path: Path, base: dict[str, Any], **changes: Any) -> Path:
    """Write ``base`` with ``changes`` applied (``a__b=value`` sets ``base["a"]["b"]``) as YAML at ``path``."""
    cfg = json.loads(json.dumps(base))
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path.write_text(yaml.safe_dump(cfg))
    return path
