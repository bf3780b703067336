"""Predicting depth for images or a dataset with a PyTorch model and writing it to a folder.

What is written, and the safety rules (never over an input, ``--overwrite`` only replaces earlier
predictions), are :mod:`slimdepth.prediction`'s, shared with the torch-free predictor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from slimdepth.data.base import DepthDataset
from slimdepth.evaluate.loop import predict_depth
from slimdepth.models.base import model_device
from slimdepth.prediction import (
    PredictionInputs,
    PredictionPlan,
    PredictionSummary,
    _resolved,
    aspect_warning,
    image_inputs,
    plan_outputs,
    plan_prediction,
    start_prediction,
    write_prediction,
)

__all__ = ["PredictionInputs", "PredictionPlan", "PredictionSummary", "dataset_inputs", "image_inputs",
           "plan_outputs", "plan_prediction", "predict_to_folder"]


def dataset_inputs(dataset: DepthDataset, spec: str = "") -> PredictionInputs:
    """Every sample of ``dataset``, named by sample; every file it reads is protected."""
    return PredictionInputs(dataset.names(), dataset.load, _resolved(dataset.source_files()),
                            _resolved(dataset.source_folders()), f"the dataset {spec}".rstrip(), own_intrinsics=True)


def predict_to_folder(model: torch.nn.Module, plan: PredictionPlan, input_size: tuple[int, int] | None = None,
                      progress: Callable[[int, int], None] | None = None,
                      warn: Callable[[str], None] | None = None) -> PredictionSummary:
    """Predict every input of ``plan`` and write its files (see the module docstring).

    ``warn`` receives one-line warnings (a resize that changes the aspect ratio);
    ``progress(done, total)`` is called after each image.
    """
    inputs, out = plan.inputs, plan.out
    device = model_device(model)
    summary = start_prediction(plan)
    for i, name in enumerate(inputs.names):
        sample = inputs.load(i)
        image = sample["image"]
        if i == 0:  # the folder appears once the first image has been read
            message = aspect_warning(tuple(image.shape[-2:]), input_size)
            if message and warn is not None:
                warn(message)
            out.mkdir(parents=True, exist_ok=True)
        depth = predict_depth(model, [torch.as_tensor(image)], input_size, device=device)[0][0].numpy()
        write_prediction(plan, summary, name, depth, image, sample.get("K"))
        if progress is not None:
            progress(i + 1, len(inputs.names))
    return summary
