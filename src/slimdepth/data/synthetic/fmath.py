"""NumPy's float semantics for the compiled (numba) parts of the generator.

Compiled loops must give the bits the NumPy code gave: float32 in, float32 out (constants are
float32 too, or a float32 value is widened to float64 as NumPy widens it against a float64
scalar), no fastmath, and NumPy's NaN rules for minimum and maximum, which Python's ``min``
and ``max`` do not follow.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache

import numpy as np
from numba import njit

F32 = np.float32
INF32 = np.float32(np.inf)
_HERE = os.path.dirname(os.path.abspath(__file__))


def source_hash(folder: str) -> str:
    """A hash of the names and contents of the ``.py`` files in ``folder``."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


@lru_cache(maxsize=None)
def package_stamp() -> str:
    """The freshness stamp of this package's compiled code: :func:`source_hash` of the package.

    numba's own stamp is the defining file alone, so a kernel cached before an edit of a
    function or constant it uses from another module (``fmin``, ``texel``, ``BOX``) would run
    the old code. Any edit of the package recompiles all of its kernels instead (a few seconds).
    """
    return source_hash(_HERE)


def _cache_dirs() -> list[str]:
    """Where the compiled kernels may be cached, in order: ``NUMBA_CACHE_DIR`` when set, the
    package's ``__pycache__``, the user's cache, the temporary directory (the first writable)."""
    from numba.core import config

    user = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    dirs = [os.path.join(config.CACHE_DIR, "slimdepth-synthetic")] if config.CACHE_DIR else []
    return dirs + [os.path.join(_HERE, "__pycache__"), os.path.join(user, "slimdepth", "numba"),
                   os.path.join(tempfile.gettempdir(), "slimdepth-numba")]


def _register_locator() -> None:
    """Cache this package's kernels under :func:`package_stamp` (numba's locators are internal
    API: if they change, numba's default caching applies)."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)  # renamed in numba 0.62
    base = getattr(caching, "_CacheLocator", None)
    if impl is None or base is None:  # pragma: no cover - a numba without these internals
        return

    class PackageLocator(base):  # type: ignore[misc, valid-type]
        def __init__(self, path: str) -> None:
            self._path = path

        def get_cache_path(self) -> str:
            return self._path

        def get_source_stamp(self) -> str:
            return package_stamp()

        def get_disambiguator(self) -> str:
            return "0"  # the file name holds the module and function: one file per kernel, overwritten when stale

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != _HERE:
                return None
            for path in _cache_dirs():
                locator = cls(path)
                try:
                    locator.ensure_cache_path()
                    return locator
                except OSError:
                    continue
            return None

    if not any(c.__name__ == "PackageLocator" for c in impl._locator_classes):
        impl._locator_classes.insert(0, PackageLocator)


_register_locator()
# Compiled once per machine and cached (see package_stamp); IEEE division (inf and NaN, not
# ZeroDivisionError); no GIL, so the right view's helper thread renders beside the left one.
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
