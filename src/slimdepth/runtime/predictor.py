"""``DepthPredictor``: depth in metres for an image, from an exported ``.onnx`` file, without PyTorch.

Imports only NumPy, Pillow and ONNX Runtime (and slimdepth's torch-free modules), so it runs on
a Raspberry Pi or in a small container. The image is resized for the model and the depth back
to the image exactly as the PyTorch path does (:mod:`slimdepth.runtime.resize`), so both give the
same depth; :func:`predict_to_folder` writes the same files as ``slimdepth predict`` with a
PyTorch model (:mod:`slimdepth.prediction`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slimdepth.errors import ConfigError
from slimdepth.fileio import read_rgb
from slimdepth.prediction import PredictionPlan, PredictionSummary, aspect_warning, start_prediction, write_prediction
from slimdepth.runtime.resize import resize_bilinear
from slimdepth.runtime.session import OnnxDepthModel

__all__ = ["DepthPredictor", "as_image", "predict_to_folder"]


def as_image(image: Any) -> np.ndarray:
    """An image as 3xHxW float32 in [0, 1]: a path, a PIL image, HxWx3 uint8, or 3xHxW float."""
    if isinstance(image, (str, Path)):
        return read_rgb(image).transpose(2, 0, 1).astype(np.float32) / 255.0
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1).astype(np.float32) / 255.0
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 3 and arr.dtype == np.uint8:
        return arr.transpose(2, 0, 1).astype(np.float32) / 255.0
    if arr.ndim == 3 and arr.shape[0] == 3 and np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    raise ConfigError(f"an image must be a file, a PIL image, HxWx3 uint8 or 3xHxW float, got {arr.dtype} {arr.shape}")


class DepthPredictor:
    """``DepthPredictor("model.onnx").predict(image)`` -> HxW float32 depth in metres at the image's size.

    ``size`` (H, W) is the model input for a dynamic-size export (default: the size it was
    exported at); a fixed-size export always takes its own. ``threads`` sets ONNX Runtime's
    intra-op threads.
    """

    def __init__(self, path: str | Path, threads: int | None = None, size: tuple[int, int] | None = None,
                 providers: list[str] | None = None) -> None:
        self.model = OnnxDepthModel.load(path, threads=threads, providers=providers)
        if size is not None and self.model.input_size is not None and tuple(size) != self.model.input_size:
            h, w = self.model.input_size
            raise ConfigError(f"{Path(path).name} is a fixed-size export for {h}x{w} inputs; --size cannot change it")
        self.size = tuple(size) if size is not None else self.model.default_size

    @property
    def metadata(self) -> dict[str, Any]:
        """The export's description: zoo name and options, input size, unit, max depth, version, source."""
        return self.model.metadata

    def predict(self, image: Any) -> np.ndarray:
        """Depth in metres (HxW float32) at the image's own size."""
        x = as_image(image)
        shape = x.shape[-2:]
        size = self.size or shape
        depth = self.model.run(resize_bilinear(x, size)[None])[0]
        return resize_bilinear(depth, shape)[0]


def predict_to_folder(predictor: DepthPredictor, plan: PredictionPlan,
                      progress: Callable[[int, int], None] | None = None,
                      warn: Callable[[str], None] | None = None) -> PredictionSummary:
    """Predict every input of ``plan`` and write its files, as the PyTorch path does."""
    inputs, out = plan.inputs, plan.out
    summary = start_prediction(plan)
    for i, name in enumerate(inputs.names):
        sample = inputs.load(i)
        image = as_image(sample["image"].numpy() if hasattr(sample["image"], "numpy") else sample["image"])
        if i == 0:
            message = aspect_warning(tuple(image.shape[-2:]), predictor.size)
            if message and warn is not None:
                warn(message)
            out.mkdir(parents=True, exist_ok=True)
        write_prediction(plan, summary, name, predictor.predict(image), image, sample.get("K"))
        if progress is not None:
            progress(i + 1, len(inputs.names))
    return summary
