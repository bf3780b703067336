"""Shared test fixtures: the real sample data beside the repository (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
