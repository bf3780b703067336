"""Road structures of the synthetic scenes: overpasses, guard rails, barriers, walls and fences.

These are the large man-made shapes of real drives that a depth network must place correctly:
a bridge deck a few metres overhead that ends in the sky, rails and barriers that run along the
road at knee height, noise walls and fences that close the view beside it. All are boxes of
the CONCRETE or RAIL materials labelled as ``building`` (the synthetic classes have no wall,
fence or guard-rail class).
"""

from __future__ import annotations

import numpy as np

from slimdepth.data.synthetic.primitives import (
    BUILDING, CONCRETE, FOLIAGE, LEAF, RAIL, VEGETATION, PrimBuilder, pick, uniform,
)

CONCRETE_TONES = [(0.50, 0.49, 0.46), (0.58, 0.57, 0.54), (0.42, 0.41, 0.39), (0.62, 0.60, 0.55)]
RAIL_TONES = [(0.55, 0.56, 0.58), (0.45, 0.46, 0.47), (0.62, 0.62, 0.60)]
# wall styles (params[0]): plain concrete, panels (noise walls), slats (fences)
PLAIN_WALL, PANELS, SLATS = 0.0, 1.0, 2.0
CLEARANCE = 4.6  # the lowest overpass clearance (m): every vehicle (at most 4 m tall) passes


def overpass(b: PrimBuilder, rng: np.random.Generator, left: float, right: float, z_lo: float, z_hi: float) -> float:
    """A bridge across the road between lateral positions ``left`` and ``right`` (its pillars stand
    outside them) at a distance drawn from [z_lo, z_hi]; returns the distance of its near face."""
    z0 = uniform(rng, z_lo, z_hi)
    depth = uniform(rng, 8.0, 18.0)
    bottom = uniform(rng, CLEARANCE, 6.5)
    top = bottom + uniform(rng, 1.0, 2.2)
    span = 160.0
    tone = pick(rng, CONCRETE_TONES)
    b.new_object()
    b.box(0.0, z0 + depth / 2, bottom, top, span / 2, depth / 2, CONCRETE, BUILDING, tone, (0.3, 0.3, 0.3),
          (PLAIN_WALL, 1.0))
    b.occupy(0.0, z0 + depth / 2, span / 2, depth / 2, overhead=True)
    # a parapet on the deck and pillars (or abutments) beside the road
    b.box(0.0, z0 + 0.2, top, top + uniform(rng, 0.6, 1.1), span / 2, 0.2, RAIL, BUILDING, pick(rng, RAIL_TONES))
    for side, edge in ((-1, left), (1, right)):
        w = uniform(rng, 0.8, 1.6)
        x = edge + side * (uniform(rng, 0.5, 3.0) + w / 2)
        b.new_object()
        b.box(x, z0 + depth / 2, 0.0, bottom, w / 2, depth / 2 - 0.5, CONCRETE, BUILDING, tone, (0.3, 0.3, 0.3),
              (PLAIN_WALL, 1.0))
        b.occupy(x, z0 + depth / 2, w / 2, depth / 2, tall=True)
    return z0


def guard_rail(b: PrimBuilder, rng: np.random.Generator, x: float, z0: float, z1: float, base: float) -> None:
    """A steel guard rail along the road at lateral position ``x`` from z0 to z1, on posts every
    3-5 m for the first 24 m (beyond, a post is about a pixel wide at 192x640). ``base`` is the ground height."""
    tone = pick(rng, RAIL_TONES)
    top = base + uniform(rng, 0.7, 0.8)
    b.new_object()
    b.box(x, 0.5 * (z0 + z1), top - 0.32, top, 0.05, 0.5 * (z1 - z0), RAIL, BUILDING, tone, (0.2, 0.2, 0.2))
    b.occupy(x, 0.5 * (z0 + z1), 0.2, 0.5 * (z1 - z0))
    step = uniform(rng, 3.0, 5.0)
    z = z0 + uniform(rng, 0.0, step)
    while z < min(z1, 24.0):
        b.box(x + 0.08 * np.sign(x), z, base, top - 0.32, 0.05, 0.06, RAIL, BUILDING, (0.3, 0.3, 0.3))
        z += step


def barrier(b: PrimBuilder, rng: np.random.Generator, x: float, z0: float, z1: float) -> None:
    """A concrete median barrier (New Jersey type, 0.8-1.1 m) from z0 to z1."""
    b.new_object()
    b.box(x, 0.5 * (z0 + z1), 0.0, uniform(rng, 0.8, 1.1), 0.25, 0.5 * (z1 - z0), CONCRETE, BUILDING,
          pick(rng, CONCRETE_TONES), (0.3, 0.3, 0.3), (PLAIN_WALL, 0.0))
    b.occupy(x, 0.5 * (z0 + z1), 0.3, 0.5 * (z1 - z0))


def roadside_wall(b: PrimBuilder, rng: np.random.Generator, x: float, z0: float, z1: float, base: float,
                  side: int) -> None:
    """A noise wall, a fence or a hedge along the road beside it, from z0 to z1; ``side`` -1 is left."""
    r = rng.random()
    b.new_object()
    if r < 0.4:
        height = uniform(rng, 2.0, 5.0)
        b.box(x + side * 0.15, 0.5 * (z0 + z1), base, base + height, 0.15, 0.5 * (z1 - z0), CONCRETE, BUILDING,
              pick(rng, CONCRETE_TONES), (0.25, 0.3, 0.25), (PANELS, uniform(rng, 2.0, 5.0)))
    elif r < 0.7:
        height = uniform(rng, 1.0, 2.2)
        b.box(x + side * 0.05, 0.5 * (z0 + z1), base, base + height, 0.05, 0.5 * (z1 - z0), CONCRETE, BUILDING,
              pick(rng, [(0.35, 0.25, 0.15), (0.30, 0.32, 0.30), (0.45, 0.45, 0.42)]), (0.1, 0.1, 0.1),
              (SLATS, uniform(rng, 0.1, 0.25)))
    else:
        hx = uniform(rng, 0.4, 0.9)
        b.box(x + side * hx, 0.5 * (z0 + z1), base, base + uniform(rng, 1.0, 2.5), hx, 0.5 * (z1 - z0), FOLIAGE,
              VEGETATION, pick(rng, LEAF), (0.0, 0.0, 0.0), (2.0,))
    b.occupy(x + side * 0.5, 0.5 * (z0 + z1), 0.5, 0.5 * (z1 - z0), tall=True)
