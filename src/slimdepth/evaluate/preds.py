"""Score a folder of predicted depth maps (from any model) against a dataset's ground truth.

Prediction files are matched to samples by name: ``<name>.png`` or ``<name>.npy`` under the
prediction folder (names may contain sub-folders), or, when that file is absent, a file whose
stem is the name's basename (used only when that basename is unique among the dataset's names,
so that two sequences with the same frame numbers never share a prediction). File
reading lives here; the maths lives in :mod:`~slimdepth.evaluate.metrics` and
:mod:`~slimdepth.evaluate.conventions`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import torch

from slimdepth.data.base import DepthDataset
from slimdepth.data.registry import build_dataset
from slimdepth.errors import ConfigError, DataError
from slimdepth.evaluate.conventions import EvalConfig, evaluate_pair, preset_for, scale_ratio_stats, valid_mask
from slimdepth.evaluate.metrics import METRIC_NAMES, MetricAccumulator
from slimdepth.fileio import IMAGE_SUFFIXES, list_files, read_depth

PredEncoding = Literal["mm", "kitti", "npy", "auto"]
PRED_ENCODINGS: tuple[str, ...] = ("auto", "mm", "kitti", "npy")
_SUFFIXES = {"auto": (".png", ".npy"), "mm": (".png",), "kitti": (".png",), "npy": (".npy",)}
_SHOW_NAMES = 5

Progress = Callable[[int, int], None]


def _clean(value: Any) -> Any:
    """NaN/inf floats become None so that the result is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


@dataclass
class EvalReport:
    """Result of scoring a prediction folder: mean metrics, counts, ratios and the conventions used."""

    metrics: dict[str, float]
    num_images: int
    config: EvalConfig
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    scale_ratio: dict[str, float | int] | None = None
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)
    pred_dir: str = ""
    dataset: str = ""
    encoding: str = "auto"
    resize: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        """Images without any valid ground-truth pixel under the conventions."""
        return len(self.skipped)

    @property
    def num_missing(self) -> int:
        """Samples without a prediction file (only with ``allow_missing``)."""
        return len(self.missing)

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        """JSON-serialisable form (NaN becomes null); per-image metrics only when asked."""
        out: dict[str, Any] = {
            "metrics": dict(self.metrics),
            "num_images": self.num_images,
            "num_skipped": self.num_skipped,
            "skipped": list(self.skipped),
            "num_missing": self.num_missing,
            "missing": list(self.missing),
            "scale_ratio": dict(self.scale_ratio) if self.scale_ratio is not None else None,
            "config": self.config.to_dict(),
            "pred_dir": self.pred_dir,
            "dataset": self.dataset,
            "encoding": self.encoding,
            "resize": self.resize,
            "warnings": list(self.warnings),
        }
        if per_image:
            out["per_image"] = {k: dict(v) for k, v in self.per_image.items()}
        return _clean(out)

    def format_table(self, decimals: int = 3) -> str:
        """Two lines: metric names, then the mean values (δ as fractions), as monodepth2 prints them."""
        widths = [max(8, len(m.display)) for m in METRIC_NAMES]
        header = " | ".join(f"{m.display:>{w}}" for m, w in zip(METRIC_NAMES, widths))
        values = " | ".join(f"{self.metrics[m.key]:>{w}.{decimals}f}" for m, w in zip(METRIC_NAMES, widths))
        return header + "\n" + values

    def format_summary(self) -> str:
        """One line: what was scored, under which conventions, and the scale ratios when used."""
        c = self.config
        crop = f"{c.crop} crop" if c.crop else "no crop"
        text = (
            f"{self.num_images} images scored ({self.num_skipped} skipped, {self.num_missing} missing); "
            f"{c.preset or 'custom'} conventions: {c.min_depth:g}-{c.max_depth:g} m, {crop}"
        )
        if self.scale_ratio is not None:
            r = self.scale_ratio
            text += (
                f", median scaling: ratio mean {r['mean']:.3f} std {r['std']:.3f} "
                f"(median {r['median']:.3f}, std/median {r['std_over_median']:.3f})"
            )
        return text


def _strip_suffix(name: str) -> str:
    p = PurePosixPath(name)
    return str(p.with_suffix("")) if p.suffix.lower() in (*IMAGE_SUFFIXES, ".npy") else name


class _PredIndex:
    """The prediction files of a folder, by relative path without suffix and by stem."""

    def __init__(self, root: Path, suffixes: tuple[str, ...]) -> None:
        self.by_rel: dict[str, list[Path]] = defaultdict(list)
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        for path in list_files(root, suffixes, recursive=True):
            rel = path.relative_to(root).with_suffix("").as_posix()
            self.by_rel[rel].append(path)
            self.by_stem[path.stem].append(path)

    def match(self, name: str, basename_ok: bool) -> Path | None:
        key = _strip_suffix(name)
        hits = self.by_rel.get(key, [])
        if not hits and basename_ok:
            hits = self.by_stem.get(PurePosixPath(key).name, [])
        if len(hits) > 1 and len({h.with_suffix("") for h in hits}) == 1:
            # `slimdepth predict` writes <name>.png (mm) and <name>.npy (metres) side by side:
            # the lossless metres win
            hits = [h for h in hits if h.suffix.lower() == ".npy"] or hits
        if len(hits) > 1:
            listed = ", ".join(str(p) for p in hits[:3])
            raise DataError(f"sample {name!r}: several prediction files match ({listed}); keep one or choose the encoding")
        return hits[0] if hits else None


def _resolve_encoding(path: Path, encoding: str) -> str:
    if encoding == "auto":
        return "npy" if path.suffix.lower() == ".npy" else "mm"
    return encoding


def _read_prediction(path: Path, encoding: str) -> torch.Tensor:
    return torch.from_numpy(read_depth(path, _resolve_encoding(path, encoding)))  # type: ignore[arg-type]


class _UnitCheck:
    """Watches raw predictions for the two silent unit mistakes of depth files.

    * zeros where the ground truth is valid: a 16-bit millimetre PNG cannot hold depths beyond
      65.5 m and stores them as 0, which scoring then clamps to the minimum depth;
    * a median gt/pred ratio near 1000/256 (or its inverse): KITTI's value/256 PNGs read as
      millimetres, or the other way round.
    """

    def __init__(self) -> None:
        self.valid = 0
        self.zeros = 0
        self.ratios: list[float] = []
        self.png_mm = False

    def add(self, pred: torch.Tensor, gt: torch.Tensor, config: EvalConfig, path: Path, encoding: str) -> None:
        self.png_mm |= _resolve_encoding(path, encoding) == "mm"
        gt = gt.reshape(gt.shape[-2:])
        if tuple(pred.shape[-2:]) != tuple(gt.shape):
            return  # predictions to be resized: raw pixels do not line up with the ground truth
        pred = pred.reshape(gt.shape)
        mask = valid_mask(gt, config)
        p = pred[mask]
        self.valid += int(mask.sum())
        self.zeros += int((p <= 0).sum())
        ok = p > 0
        if ok.any():
            self.ratios.append(float(gt[mask][ok].median() / p[ok].median()))

    def warnings(self) -> list[str]:
        out = []
        if self.valid and self.zeros > 0.01 * self.valid:
            hint = ("; 16-bit millimetre PNGs cannot hold depths beyond 65.5 m: write .npy (metres) or "
                    "KITTI PNGs (--encoding kitti)") if self.png_mm else ""
            out.append(f"{100 * self.zeros / self.valid:.1f}% of the valid ground-truth pixels have a zero "
                       f"(missing) prediction, scored as the minimum depth{hint}")
        if self.ratios:
            r = float(torch.tensor(self.ratios).median())
            k = 1000 / 256
            if abs(r / k - 1) < 0.1:
                out.append(f"predictions are {r:.2f}x nearer than the ground truth, about 1000/256: KITTI-encoded "
                           "PNGs (value/256) read as millimetres? try --encoding kitti")
            elif abs(r * k - 1) < 0.1:
                out.append(f"predictions are {1 / r:.2f}x farther than the ground truth, about 1000/256: millimetre "
                           "PNGs read as KITTI (value/256)? try --encoding mm")
        return out


def _ground_truth(dataset: DepthDataset, index: int, name: str) -> torch.Tensor:
    sample = dataset.load(index)
    depth = sample.get("depth")
    if depth is None:
        raise DataError(f"sample {name!r} has no ground-truth depth; cannot evaluate against an unlabeled dataset")
    return depth


def evaluate_predictions(
    pred_dir: str | Path,
    dataset: DepthDataset | str | dict[str, Any],
    config: EvalConfig | None = None,
    encoding: PredEncoding = "auto",
    resize: bool = False,
    progress: Progress | None = None,
    allow_missing: bool = False,
) -> EvalReport:
    """Score every prediction file in ``pred_dir`` against ``dataset``'s ground-truth depth.

    ``dataset`` is a :class:`DepthDataset` or a dataset spec. ``config`` defaults to the
    dataset's preset (:func:`preset_for`). ``encoding``: ``mm`` / ``kitti`` 16-bit PNG, ``npy``
    (metres) or ``auto`` (``.npy`` -> npy, ``.png`` -> mm, the default of ``slimdepth predict``).
    Predictions must have the ground truth's size unless ``resize`` (bilinear). ``progress`` is
    called as ``progress(done, total)`` after each image. Missing predictions raise
    :class:`DataError` unless ``allow_missing``, in which case they are listed in the report.
    """
    if encoding not in PRED_ENCODINGS:
        raise ConfigError(f"unknown prediction encoding {encoding!r}; choose one of {', '.join(PRED_ENCODINGS)}")
    if isinstance(dataset, (str, dict)):
        dataset = build_dataset(dataset)
    config = config if config is not None else preset_for(dataset)
    root = Path(pred_dir)
    if not root.is_dir():
        raise DataError(f"{root}: prediction directory not found")

    names = list(dataset.names())
    index = _PredIndex(root, _SUFFIXES[encoding])
    base_counts = Counter(PurePosixPath(_strip_suffix(n)).name for n in names)
    matched: list[tuple[int, str, Path]] = []
    missing: list[str] = []
    for i, name in enumerate(names):
        path = index.match(name, basename_ok=base_counts[PurePosixPath(_strip_suffix(name)).name] == 1)
        if path is None:
            missing.append(name)
        else:
            matched.append((i, name, path))
    suffixes = " or ".join(_SUFFIXES[encoding])
    if missing and not allow_missing:
        shown = ", ".join(missing[:_SHOW_NAMES]) + (", ..." if len(missing) > _SHOW_NAMES else "")
        raise DataError(
            f"{root}: {len(missing)} of {len(names)} predictions missing (expected <name>{suffixes}): {shown}"
        )
    if not matched:
        raise DataError(f"{root}: no prediction file ({suffixes}) matches any of the {len(names)} sample names")

    acc = MetricAccumulator()
    units = _UnitCheck()
    ratios: list[float] = []
    skipped: list[str] = []
    per_image: dict[str, dict[str, float]] = {}
    for done, (i, name, path) in enumerate(matched, start=1):
        pred = _read_prediction(path, encoding)
        gt = _ground_truth(dataset, i, name)
        units.add(pred, gt, config, path, encoding)
        try:
            result = evaluate_pair(pred, gt, config, resize=resize)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        acc.add(result.metrics)
        if math.isnan(result.metrics["abs_rel"]):
            skipped.append(name)
        else:
            per_image[name] = dict(result.metrics)
            if result.scale_ratio is not None:
                ratios.append(result.scale_ratio)
                per_image[name]["scale_ratio"] = result.scale_ratio
        if progress is not None:
            progress(done, len(matched))

    if acc.num_images == 0:
        raise DataError(
            f"{root}: none of the {len(matched)} images has a valid ground-truth pixel "
            f"({config.min_depth:g} < depth < {config.max_depth:g} m, crop {config.crop}); check the evaluation preset"
        )
    return EvalReport(
        metrics=acc.compute(),
        num_images=acc.num_images,
        config=config,
        skipped=skipped,
        missing=missing,
        scale_ratio=scale_ratio_stats(ratios) if config.median_scaling else None,
        per_image=per_image,
        pred_dir=str(root),
        dataset=str(getattr(dataset, "dataset_name", type(dataset).__name__)),
        encoding=encoding,
        resize=resize,
        warnings=units.warnings(),
    )
