"""The torch-free predictor: exported ``.onnx`` depth models under ONNX Runtime.

Imports only NumPy, Pillow and ONNX Runtime; ``slimdepth predict`` adds typer and rich. On a
device without PyTorch that is the whole install (see the README)::

    python -m pip install --no-deps . && python -m pip install numpy pillow onnxruntime typer rich

and then::

    from slimdepth.runtime import DepthPredictor
    depth = DepthPredictor("model.onnx").predict("frame.png")   # HxW metres
"""

from __future__ import annotations

from slimdepth.runtime.predictor import DepthPredictor, as_image, predict_to_folder
from slimdepth.runtime.resize import resize_bilinear
from slimdepth.runtime.session import METADATA_KEY, OnnxDepthModel, open_session

__all__ = ["METADATA_KEY", "DepthPredictor", "OnnxDepthModel", "as_image", "open_session", "predict_to_folder",
           "resize_bilinear"]
