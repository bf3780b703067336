"""Helpers shared by the command-line tests."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
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


#: a training recipe small enough for a test: tiny-multires, 8 synthetic frames of 32x96, 2 epochs
TINY_RECIPE = {
    "model": {"name": "tiny-multires", "max_depth": 80.0},
    "data": {"train": "synthetic,num=8,size=32x96,lidar=false", "val": "synthetic,num=4,size=32x96,split=val,lidar=false",
             "batch_size": 4, "val_batch_size": 4, "workers": 0, "cache": True},
    "loss": {"terms": [{"type": "silog"}]},
    "schedule": {"warmup_steps": 1},
    "train": {"epochs": 2, "log_every": 1, "checkpoint_every": 2, "samples": 0},
}


def load_script(path: Path, name: str) -> ModuleType:
    """A benchmark script (not a package module) imported from its file as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
