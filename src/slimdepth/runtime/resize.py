"""Bilinear resizing in NumPy that matches ``torch.nn.functional.interpolate`` exactly.

``mode="bilinear", align_corners=False`` without antialiasing, as the PyTorch prediction path
resizes images for the model and depth back to the image: the source coordinate of output
pixel ``i`` is ``(i + 0.5) * in / out - 0.5`` (a float32 scale, one rounding), clamped at 0, and the two neighbours are
weighted linearly. Keeping the torch-free predictor on the same formula is what makes its depth
equal the PyTorch prediction's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resize_bilinear"]


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Low and high source indices and the weight of the high one, for each output index."""
    # torch's CPU kernel: a float32 scale, and scale * (i + 0.5) - 0.5 rounded once (a fused
    # multiply-add); computing it exactly in float64 and rounding reproduces its weights
    scale = np.float64(np.float32(n_in / n_out))
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5, 0.0).astype(np.float32)
    low = np.minimum(src.astype(np.intp), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (src - low.astype(np.float32)).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``x`` (..., H, W) to ``size`` = (h, w), as float32."""
    x = np.asarray(x, dtype=np.float32)
    h, w = int(size[0]), int(size[1])
    if x.shape[-2:] == (h, w):
        return x
    y0, y1, wy = _axis(x.shape[-2], h)
    x0, x1, wx = _axis(x.shape[-1], w)
    rows = x[..., y0, :] * (1.0 - wy)[:, None] + x[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1.0 - wx) + rows[..., x1] * wx
