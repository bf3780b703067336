"""The report's pictures as PNG bytes: accuracy against latency, training curves, image sheets.

Matplotlib draws with the Agg backend (no display); image sheets are NumPy arrays made by
:mod:`slimdepth.visualize`, stacked and shrunk here so that the embedded page stays small.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: the report is drawn headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from slimdepth.report.collect import ModelEntry, RunInfo, read_json  # noqa: E402

__all__ = ["png_bytes", "stack_rows", "tradeoff_plot", "training_curves"]

#: widest embedded image sheet, in pixels (a KITTI frame panel is ~5000 px wide at full size)
MAX_SHEET_WIDTH = 1600
#: validation metrics drawn under the loss curve
CURVE_METRICS = (("d1", "δ1"), ("abs_rel", "AbsRel"))


def png_bytes(image: np.ndarray, max_width: int = MAX_SHEET_WIDTH) -> bytes:
    """An HxWx3 uint8 array as PNG bytes, shrunk to at most ``max_width`` pixels wide."""
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if pil.width > max_width:
        pil = pil.resize((max_width, max(1, round(pil.height * max_width / pil.width))), Image.BILINEAR)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def stack_rows(rows: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Stack image rows vertically (white gaps), padding narrower rows on the right."""
    width = max(r.shape[1] for r in rows)
    parts: list[np.ndarray] = []
    for i, row in enumerate(rows):
        if i:
            parts.append(np.full((gap, width, 3), 255, np.uint8))
        pad = np.full((row.shape[0], width - row.shape[1], 3), 255, np.uint8)
        parts.append(np.concatenate([row, pad], axis=1))
    return np.concatenate(parts, axis=0)


def _figure_bytes(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def tradeoff_plot(models: Sequence[ModelEntry], runtime: str, budget_ms: float | None) -> bytes | None:
    """δ1 and AbsRel against median latency on ``runtime``, one point per model, with the
    latency budget as a dashed vertical line; None when no model has both numbers."""
    points = [(m.name, m.latency[runtime], m.metrics) for m in models
              if runtime in m.latency and m.metrics and math.isfinite(m.metrics.get("d1", math.nan))]
    if not points:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, label, better) in zip(axes, (("d1", "δ1 (higher is better)", max),
                                               ("abs_rel", "AbsRel (lower is better)", min))):
        for name, ms, metrics in points:
            value = metrics.get(key, math.nan)
            ax.scatter([ms], [value], s=36)
            ax.annotate(name, (ms, value), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if budget_ms is not None:
            ax.axvline(budget_ms, color="crimson", linestyle="--", linewidth=1.2, label=f"budget {budget_ms:g} ms")
            ax.legend(loc="best", fontsize=8)
        ax.set_xlabel(f"median latency on {runtime} (ms, batch 1)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"accuracy against latency: {runtime}")
    fig.tight_layout()
    return _figure_bytes(fig)


def _read_log(path: Path) -> tuple[list[float], list[float]]:
    steps: list[float] = []
    losses: list[float] = []
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    step, loss = float(row["step"]), float(row["loss"])
                except (KeyError, TypeError, ValueError):
                    continue
                steps.append(step)
                losses.append(loss)
    except (OSError, UnicodeDecodeError, csv.Error):
        return [], []
    return steps, losses


def _validation(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    info = read_json(path)
    items = info.get("validation") if isinstance(info, dict) else None
    return [v for v in items or [] if isinstance(v, dict) and isinstance(v.get("metrics"), dict) and "step" in v]


def training_curves(run: RunInfo) -> bytes | None:
    """The run's training loss (``log.csv``) and validation δ1 / AbsRel (``metrics.json``) against
    the step; None when it logged neither."""
    steps, losses = _read_log(run.path / "log.csv")
    validation = _validation(run.path / "metrics.json")
    if not steps and not validation:
        return None
    fig, axes = plt.subplots(1, 1 + len(CURVE_METRICS), figsize=(12, 3.2))
    axes[0].plot(steps, losses, linewidth=1.0)
    axes[0].set_title("training loss")
    if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
        axes[0].set_yscale("log")
    for ax, (key, label) in zip(axes[1:], CURVE_METRICS):
        xs = [float(v["step"]) for v in validation if key in v["metrics"]]
        ys = [float(v["metrics"][key]) for v in validation if key in v["metrics"]]
        ax.plot(xs, ys, marker="o", linewidth=1.0)
        ax.set_title(f"validation {label}")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run.name} ({run.kind})")
    fig.tight_layout()
    return _figure_bytes(fig)
