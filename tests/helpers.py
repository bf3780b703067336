"""Helpers shared by the tests: running the CLI in-process, one-line errors, recipe files, vivid models."""

from __future__ import annotations

import importlib.util
import json
import runpy
import sys
from types import ModuleType
from pathlib import Path
from typing import Any

import torch
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


def run_script_main(monkeypatch, capfd, path: Path, *args: str) -> tuple[int, str, str]:
    """Run the script at ``path`` with ``args`` in this process, its ``__main__`` block included;
    return (exit code, stdout, stderr) as ``python PATH ARGS`` leaves them (``SystemExit("message")``
    prints the message and exits 1; ``capfd`` also catches what native code writes). Not seen here:
    anything a script prints when first imported (``tests/test_benchmark_scripts.py`` imports them
    all in a new interpreter for that), and an uncaught exception, which fails the test instead."""
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    code: int | str | None = 0
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    out, err = capfd.readouterr()
    if isinstance(code, str):
        return 1, out, err + code + "\n"
    return code or 0, out, err


def load_script(path: Path, name: str) -> ModuleType:
    """A benchmark script (not a package module) imported from its file as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vivid(model: torch.nn.Module, head_gain: float = 1.0) -> torch.nn.Module:
    """``model`` with seeded random BatchNorm statistics and affine parameters, as training leaves
    them. A freshly built network predicts nearly its head's bias everywhere, which hides a layer
    converted wrongly (a wrong LiteRT stem once passed parity that way); with these the depth
    varies, and parity checks the whole graph. ``head_gain`` multiplies the depth head's weights,
    spreading the depth over metres (and the runtimes' rounding differences with it)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low, high in ((module.running_mean, -0.5, 0.5), (module.running_var, 0.5, 1.5),
                                          (module.weight, 0.7, 1.3), (module.bias, -0.3, 0.3)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
            elif isinstance(module, torch.nn.Conv2d) and module.out_channels == 1:  # a depth head
                module.weight.mul_(head_gain)
    return model.eval()
