"""Running a model over a dataset and scoring it with the evaluation conventions.

Images are resized to the model's input size, predicted (optionally averaged with the
prediction of the mirrored image, flip test-time augmentation), and the prediction is resized
back to each ground truth's own size (bilinear, as monodepth2 does) before scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from slimdepth.data.base import DepthDataset
from slimdepth.errors import DataError
from slimdepth.evaluate.conventions import EvalConfig, evaluate_batch, preset_for, scale_ratio_stats
from slimdepth.evaluate.metrics import MetricAccumulator
from slimdepth.evaluate.preds import EvalReport


def input_batch(images: Sequence[torch.Tensor], input_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Images (3, H, W) in [0, 1] as one float batch at ``input_size`` (bilinear, images already
    that size untouched), or at their own size, which must then be one."""
    sizes = [tuple(im.shape[-2:]) for im in images]
    size = tuple(input_size) if input_size is not None else sizes[0]
    if input_size is None and any(s != size for s in sizes):
        raise DataError("images of different sizes need an input size to be batched")
    return torch.stack([F.interpolate(im[None].float(), size=size, mode="bilinear", align_corners=False)[0]
                        if tuple(im.shape[-2:]) != size else im.float() for im in images])


@torch.inference_mode()
def predict_depth(
    model: torch.nn.Module,
    images: Sequence[torch.Tensor],
    input_size: tuple[int, int] | None = None,
    flip: bool = False,
    device: str | torch.device = "cpu",
) -> list[torch.Tensor]:
    """Depth (1, H, W) for each image (3, H, W) in [0, 1], at each image's own size.

    With ``input_size`` the images are resized for the model (and the prediction back); with
    ``flip`` the prediction is averaged with the flipped prediction of the flipped image.
    """
    if not images:
        return []
    sizes = [tuple(im.shape[-2:]) for im in images]
    batch = input_batch(images, input_size).to(device)
    size = tuple(batch.shape[-2:])
    depth = model(batch)
    if flip:
        depth = 0.5 * (depth + model(batch.flip(-1)).flip(-1))
    depth = depth.float().cpu()
    return [F.interpolate(d[None], size=s, mode="bilinear", align_corners=False)[0] if s != size else d
            for d, s in zip(depth, sizes)]


def _list_collate(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return samples


def evaluate_model(
    model: torch.nn.Module,
    dataset: DepthDataset,
    config: EvalConfig | None = None,
    input_size: tuple[int, int] | None = None,
    batch_size: int = 4,
    flip: bool = False,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
) -> EvalReport:
    """Score ``model`` on ``dataset`` (ground truth at native resolution) under ``config``."""
    config = config if config is not None else preset_for(dataset)
    model.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    subset = torch.utils.data.Subset(dataset, range(n))
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers, collate_fn=_list_collate)
    acc = MetricAccumulator()
    ratios: list[float] = []
    skipped: list[str] = []
    done = 0
    for samples in loader:
        missing = [s["meta"]["name"] for s in samples if "depth" not in s]
        if missing:
            raise DataError(f"sample {missing[0]!r} has no ground-truth depth; cannot evaluate on an unlabeled dataset")
        preds = predict_depth(model, [s["image"] for s in samples], input_size, flip, device)
        for sample, pred in zip(samples, preds):
            result = evaluate_batch(pred[None], sample["depth"][None], config)
            per_image = {k: v[:1] for k, v in result.metrics.items()}
            if torch.isnan(per_image["abs_rel"]).any():
                skipped.append(sample["meta"]["name"])
            elif result.ratios is not None:
                ratios.append(float(result.ratios[0]))
            acc.add(per_image)
        done += len(samples)
        if progress is not None:
            progress(done, n)
    if acc.num_images == 0:
        raise DataError(f"none of the {n} images has a valid ground-truth pixel under the evaluation conventions")
    return EvalReport(
        metrics=acc.compute(), num_images=acc.num_images, config=config, skipped=skipped,
        scale_ratio=scale_ratio_stats(ratios) if config.median_scaling else None,
        dataset=str(getattr(dataset, "dataset_name", type(dataset).__name__)), encoding="model",
    )
