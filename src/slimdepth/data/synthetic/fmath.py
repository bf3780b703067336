"""NumPy's float semantics for the compiled (numba) parts of the generator.

Compiled loops must give the bits the NumPy code gave: float32 in, float32 out (constants are
float32 too, or a float32 value is widened to float64 as NumPy widens it against a float64
scalar), no fastmath, and NumPy's NaN rules for minimum and maximum, which Python's ``min``
and ``max`` do not follow.
"""

from __future__ import annotations

import numpy as np
from numba import njit

F32 = np.float32
INF32 = np.float32(np.inf)

# Compiled once per machine and cached beside the source (or in numba's user cache); IEEE
# division (inf and NaN, not ZeroDivisionError); no GIL, so the right view's helper thread
# renders beside the left one.
kernel = njit(cache=True, error_model="numpy", nogil=True)


@kernel
def fmin(a, b):
    """``np.minimum`` of two floats: NaN if either is NaN."""
    return a if (a < b or a != a) else b


@kernel
def fmax(a, b):
    """``np.maximum`` of two floats: NaN if either is NaN."""
    return a if (a > b or a != a) else b


@kernel
def fmod(a, period):
    """``a`` modulo a positive ``period``, as the shading code's ``_mod``: a - floor(a / p) * p."""
    return a - np.floor(a / period) * period
