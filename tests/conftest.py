"""Shared test fixtures: the real sample data beside the repository (skipped when absent), and one
LiteRT conversion that the export, quantization and bench tests share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    import torch


def shared_data_dir() -> Path:
    """``../shared/data`` relative to the repository, or ``$SLIMDEPTH_SHARED_DATA``."""
    env = os.environ.get("SLIMDEPTH_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real sample data not found at {root}")
    return root


#: the input size of the shared LiteRT conversion
LITERT_SIZE = (64, 128)


class SharedLiteRT(NamedTuple):
    """One LiteRT conversion that several tests share (see :func:`released_litert`)."""

    model: torch.nn.Module  # the vivid litedepth-released that was converted
    checkpoint: Path        # its weights, saved as `slimdepth train` saves a checkpoint
    tflite: Path            # the fp32 LiteRT file at LITERT_SIZE
    report: dict[str, Any]  # export_model's report of it


@pytest.fixture(scope="session")
def released_litert(tmp_path_factory) -> SharedLiteRT:
    """litedepth-released with vivid weights (tests.helpers.vivid, depth spread by a head gain of
    30), saved as a checkpoint and exported once to LiteRT at 64x128. A LiteRT conversion costs
    10-14 s on 2 cores whatever the model, so the tests that need one share this one: its parity
    is tested in test_export.py, and :func:`reuse_litert_conversion` hands it to other exports."""
    import litert_torch  # noqa: F401 - part of the dev install: CI must run this, never skip it

    import torch

    from slimdepth.deploy.export import ExportSettings, export_model
    from slimdepth.models import build_model, save_model
    from tests.helpers import vivid

    torch.manual_seed(0)
    model = vivid(build_model("litedepth-released"), head_gain=30)
    folder = tmp_path_factory.mktemp("released-litert")
    checkpoint = save_model(model, folder / "vivid")
    out = folder / "ld.tflite"
    return SharedLiteRT(model, checkpoint, out, export_model(model, out, ExportSettings("litert", LITERT_SIZE)))


@pytest.fixture
def reuse_litert_conversion(monkeypatch, released_litert) -> SharedLiteRT:
    """Every LiteRT conversion in the test copies :func:`released_litert`'s file instead of converting
    again, after checking that it is asked for the same network at the same size. The rest of the
    export runs as usual, parity check included (the copy against the model being exported)."""
    import torch

    from slimdepth.deploy import export

    shared = export._exportable(released_litert.model)
    probe = torch.rand(1, 3, *LITERT_SIZE, generator=torch.Generator().manual_seed(0))

    def copy(model: torch.nn.Module, path: Path, size: tuple[int, int]) -> None:
        # only a conversion of the same network at the same size may be replaced by the copy
        assert tuple(size) == LITERT_SIZE, f"the shared LiteRT file is for {LITERT_SIZE}, not {size}"
        with torch.inference_mode():
            assert torch.allclose(model(probe), shared(probe), atol=1e-5), "not the shared LiteRT file's network"
        shutil.copyfile(released_litert.tflite, path)

    monkeypatch.setattr(export, "_to_litert", copy)
    return released_litert
