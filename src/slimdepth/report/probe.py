"""Test-time probes of a sim-to-real gap: the frames changed in one controlled way (a gamma, a
gain, a contrast, a saturation or a blur, on the whole frame or only around the near objects) and every
model scored again (:func:`~slimdepth.report.sim_to_real.sim_to_real` with ``transform``). Which
change moves which part of the frame says what in the image a model reads depth from: a model
whose near vehicles come nearer when only they are darkened reads darkness as nearness.

``other@rest`` swaps the context instead: everything but the near objects comes from the paired
frame of another set (rendered frames around real vehicles, or real frames around rendered ones),
which says whether a model misreads the objects themselves or is misled by what surrounds them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from slimdepth.data.photometric import _blur, _contrast, _saturation
from slimdepth.errors import ConfigError
from slimdepth.flat_road import above_road

__all__ = ["DEFAULT_PROBES", "NEAR_DEPTH", "NEAR_GROW", "OTHER", "PROBE_OPS", "PROBE_PLACES", "Probe",
           "apply_probe", "near_mask", "parse_probe"]

#: what a probe may change: x ** value, x * value, the distance from the frame's mean grey times
#: value, the distance from each pixel's grey times value (0: grey frames), a Gaussian blur of
#: sigma value pixels (at the frame's size)
PROBE_OPS = ("gamma", "gain", "contrast", "saturation", "blur")
#: where: the whole frame, only the near objects (:func:`near_mask`), or everything but them
PROBE_PLACES = ("all", "near", "rest")
#: the context swap, spelt ``other@rest``: everything but the near objects from another set's frame
OTHER = "other"
#: the near objects are the ground-truth points above the road nearer than this (metres): the
#: first distance band of the benchmark, where a camera 1.65 m up sees no vehicle's foot
NEAR_DEPTH = 8.0
#: ... grown by this many pixels each way (at the frame's size), so that sparse LiDAR points
#: become the surfaces they lie on
NEAR_GROW = 7
#: the probes the script runs when none is named
DEFAULT_PROBES = ("as-is", "gamma=2.2", "gamma=0.45", "gamma=2.2@near", "gamma=2.2@rest", "gain=0.5",
                  "contrast=0.5", "saturation=0")
#: the ops whose value must be above 0 (the others take 0: black, grey or flat frames)
POSITIVE_OPS = ("gamma", "blur")
#: the largest value any op takes (a gamma of 10 is already black)
MAX_VALUE = 10.0


@dataclass(frozen=True)
class Probe:
    """One change of the frames: ``op`` at ``value`` on ``where``; ``op`` None leaves them as they are."""

    op: str | None = None
    value: float = 1.0
    where: str = "all"

    @property
    def name(self) -> str:
        """The spelling :func:`parse_probe` reads back: ``as-is``, ``gamma=2.2``, ``gamma=2.2@near``."""
        if self.op is None:
            return "as-is"
        if self.op == OTHER:
            return f"{OTHER}@rest"
        return f"{self.op}={self.value:g}" + ("" if self.where == "all" else f"@{self.where}")


def parse_probe(text: str) -> Probe:
    """``as-is``, ``other@rest`` (:data:`OTHER`) or ``OP=VALUE[@WHERE]`` (OP in :data:`PROBE_OPS`,
    WHERE in :data:`PROBE_PLACES`; gamma and blur above 0, the others from 0, all at most 10);
    anything else is a one-line ConfigError."""
    spec = str(text).strip()
    if spec == "as-is":
        return Probe()
    if spec.partition("@")[0].strip() == OTHER:
        if spec.replace(" ", "") != f"{OTHER}@rest":
            raise ConfigError(f"--probe {text!r}: the context swap is written {OTHER}@rest (the near objects "
                              "stay, everything else comes from the other set)")
        return Probe(OTHER, 1.0, "rest")
    op, eq, rest = spec.partition("=")
    op = op.strip()
    if not eq or op not in PROBE_OPS:
        raise ConfigError(f"--probe {text!r}: write as-is, {OTHER}@rest or OP=VALUE[@WHERE] with OP one of "
                          f"{', '.join(PROBE_OPS)}")
    value_text, at, where = rest.partition("@")
    where = where.strip() if at else "all"
    if where not in PROBE_PLACES:
        raise ConfigError(f"--probe {text!r}: the place after @ must be one of {', '.join(PROBE_PLACES)}")
    try:
        value = float(value_text)
    except ValueError:
        raise ConfigError(f"--probe {text!r}: {value_text.strip()!r} is not a number") from None
    low_ok = value > 0 if op in POSITIVE_OPS else value >= 0
    if not (math.isfinite(value) and low_ok and value <= MAX_VALUE):
        bound = "above 0" if op in POSITIVE_OPS else "from 0"
        raise ConfigError(f"--probe {text!r}: {op} must be {bound} up to {MAX_VALUE:g}")
    return Probe(op, value, where)


def near_mask(depth: torch.Tensor, K: Any, near: float = NEAR_DEPTH, grow: int = NEAR_GROW) -> torch.Tensor:
    """HxW boolean map of the near objects: the ground-truth points (``depth``, 1xHxW or HxW,
    metres, 0 = none) that stand above the road (:func:`~slimdepth.flat_road.above_road`) nearer
    than ``near`` metres, each grown to a square of ``2 * grow + 1`` pixels."""
    gt = depth.reshape(depth.shape[-2:]).float()
    points = above_road(gt, K) & (gt < near)
    if grow <= 0:
        return points
    return F.max_pool2d(points[None, None].float(), 2 * grow + 1, stride=1, padding=grow)[0, 0] > 0


def _change(image: torch.Tensor, op: str, value: float) -> torch.Tensor:
    if op == "gamma":
        return image.clamp(0.0, 1.0) ** value
    if op == "gain":
        return (image * value).clamp(0.0, 1.0)
    if op == "contrast":
        return _contrast(image, value)
    if op == "blur":
        return _blur(image, value)
    return _saturation(image, value)


def apply_probe(probe: Probe, frame: dict[str, Any], other: torch.Tensor | None = None) -> torch.Tensor:
    """The frame's image (3xHxW in [0, 1]) as the probe changes it; ``near`` and ``rest`` need
    the frame's ``depth`` and ``K`` (:func:`near_mask`), and a frame without near objects is left
    alone by ``near`` and changed everywhere by ``rest``. ``other@rest`` takes everything but the
    near objects from ``other``, the paired frame's image (the same size)."""
    image = frame["image"].float()
    if probe.op is None:
        return image
    if probe.op == OTHER:
        if other is None or other.shape != image.shape:
            raise ConfigError(f"--probe {probe.name}: the other frame must be given and be "
                              f"{'x'.join(map(str, image.shape[-2:]))} like this one"
                              + ("" if other is None else f", not {'x'.join(map(str, other.shape[-2:]))}"))
        changed = other.float()
    else:
        changed = _change(image, probe.op, probe.value)
    if probe.where == "all":
        return changed
    mask = near_mask(frame["depth"], frame["K"])
    if probe.where == "rest":
        mask = ~mask
    return torch.where(mask[None], changed, image)
