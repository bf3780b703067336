"""The primitives of a synthetic scene: kinds, materials, palettes, the table and its builder.

Scenes are made of analytic primitives (boxes, cylinders, ellipsoids, tubes) stored as
parallel arrays; the scene sampler and the object makers (vehicles, structures) build them
with :class:`PrimBuilder`, the ray caster and the shader read the :class:`PrimTable`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimdepth.labels import CLASS_NAMES, IGNORE_LABEL

# Semantic classes (train ids) of the synthetic data; IGNORE (255) for traffic-sign panels.
ROAD, SIDEWALK, BUILDING, VEGETATION, POLE, CAR, PEDESTRIAN, SKY = range(len(CLASS_NAMES))
IGNORE = IGNORE_LABEL

# Primitive kinds: upright (yawed) boxes, vertical cylinders, axis-aligned ellipsoids and
# tubes (cylinders lying along the road, z axis: tanker barrels).
BOX, CYLINDER, ELLIPSOID, TUBE = 0, 1, 2, 3
# Materials of primitives (ground surfaces are handled analytically, see PID_*).
FACADE, VEHICLE, POLE_METAL, SIGN_PANEL, TRUNK, FOLIAGE, PERSON, HEAD, CONCRETE, RAIL, TANK = range(11)
# Special primitive ids of the z-buffer for surfaces that are not in the primitive table.
PID_SKY, PID_ROAD, PID_SIDEWALK, PID_CURB, PID_YARD = -1, -2, -3, -4, -5

@dataclass
class PrimTable:
    """All primitives of a scene as parallel arrays (index = primitive id in the z-buffer)."""

    kind: np.ndarray  # (N,) int8: BOX, CYLINDER, ELLIPSOID
    center: np.ndarray  # (N, 3) float64
    half: np.ndarray  # (N, 3) box half extents / (r, half height, r) / ellipsoid radii
    yaw: np.ndarray  # (N, 2) cos, sin of the rotation about y (boxes only)
    material: np.ndarray  # (N,) int16
    label: np.ndarray  # (N,) uint8
    color: np.ndarray  # (N, 3) float32 linear albedo
    color2: np.ndarray  # (N, 3) float32 secondary albedo (windows, trousers, ...)
    params: np.ndarray  # (N, 6) float32 material parameters
    lo: np.ndarray  # (N, 3) world AABB
    hi: np.ndarray  # (N, 3)
    obj: np.ndarray  # (N,) int32 object id: primitives of one object (car body + cabin) share it
    lift: np.ndarray | None = None  # (N,) how far the primitive was moved up onto a sloped road (0: none)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def __post_init__(self) -> None:
        if self.lift is None:
            self.lift = np.zeros(len(self.kind), dtype=np.float32)
        # Channel-first float32 copies for per-pixel shading: ``np.take(table, pid, axis=1)``
        # on these is several times faster than gathering rows of the (N, k) arrays.
        self.centerT = np.ascontiguousarray(self.center.T, dtype=np.float32)
        self.halfT = np.ascontiguousarray(self.half.T, dtype=np.float32)
        self.yawT = np.ascontiguousarray(self.yaw.T, dtype=np.float32)
        self.colorT = np.ascontiguousarray(self.color.T, dtype=np.float32)
        self.color2T = np.ascontiguousarray(self.color2.T, dtype=np.float32)
        self.paramsT = np.ascontiguousarray(self.params.T, dtype=np.float32)


def extents(kind: np.ndarray, half: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(N, 3) half sizes of the primitives' world-aligned bounding boxes (a yawed box's widen)."""
    ext = half.copy()
    boxes = kind == BOX
    ac, as_ = np.abs(yaw[:, 0]), np.abs(yaw[:, 1])
    ext[boxes, 0] = (ac * half[:, 0] + as_ * half[:, 2])[boxes]
    ext[boxes, 2] = (as_ * half[:, 0] + ac * half[:, 2])[boxes]
    return ext


class PrimBuilder:
    """Accumulates primitives and turns them into a :class:`PrimTable`.

    It also keeps the ground footprints (x0, x1, z0, z1) that solid objects occupy, so that
    later objects can be placed only where the ground is free (no pole inside a car). Overhead
    footprints (a bridge deck) block tall things (buildings, poles, trees) but not vehicles,
    people or rails, which pass under them.
    """

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.footprints: list[tuple[float, float, float, float, bool, bool]] = []  # ..., tall, overhead
        self.objects: list[int] = []  # object id of each primitive (a car's body and cabin share one)
        self._object = -1
        # the footprints again as arrays (x0, x1, z0, z1, overhead), grown by doubling: is_free
        # is asked thousands of times per scene, and a vectorised test is ~4x faster than a loop
        self._rects = np.empty((64, 4))
        self._over = np.empty(64, dtype=bool)
        self._tall = np.empty(64, dtype=bool)

    def new_object(self) -> None:
        """Start a new object: the primitives added next belong together."""
        self._object += 1

    def occupy(self, x: float, z: float, hx: float, hz: float, tall: bool = False, overhead: bool = False) -> None:
        """Mark the rectangle |x' - x| <= hx, |z' - z| <= hz as taken; ``tall`` objects (buildings,
        poles) also keep tree crowns away; ``overhead`` ones only block tall things."""
        n = len(self.footprints)
        if n == len(self._rects):
            self._rects = np.concatenate([self._rects, np.empty_like(self._rects)])
            self._over = np.concatenate([self._over, np.empty_like(self._over)])
            self._tall = np.concatenate([self._tall, np.empty_like(self._tall)])
        self._rects[n] = (x - hx, x + hx, z - hz, z + hz)
        self._over[n] = overhead
        self._tall[n] = tall or overhead
        self.footprints.append((x - hx, x + hx, z - hz, z + hz, tall or overhead, overhead))

    def is_free(self, x: float, z: float, hx: float, hz: float | None = None, under: bool = False) -> bool:
        """True if the rectangle of half-sizes (hx, hz) around (x, z) touches no occupied footprint
        (with ``under``, overhead footprints do not count: the object fits below them)."""
        hz = hx if hz is None else hz
        n = len(self.footprints)
        r = self._rects[:n]
        hit = (x + hx > r[:, 0]) & (x - hx < r[:, 1]) & (z + hz > r[:, 2]) & (z - hz < r[:, 3])
        if under:
            hit &= ~self._over[:n]
        return not hit.any()

    def tall_distance(self, x: float, z: float) -> float:
        """Horizontal distance from (x, z) to the nearest tall footprint (inf if none)."""
        r = self._rects[: len(self.footprints)][self._tall[: len(self.footprints)]]
        if not len(r):
            return float("inf")
        dx = np.maximum(np.maximum(r[:, 0] - x, 0.0), x - r[:, 1])
        dz = np.maximum(np.maximum(r[:, 2] - z, 0.0), z - r[:, 3])
        return float(np.sqrt(dx * dx + dz * dz).min())

    def overhead_span(self, z0: float, z1: float) -> float | None:
        """The far end of an overhead footprint overlapping [z0, z1] along the road, else None."""
        ends = [f[3] for f in self.footprints if f[5] and f[2] < z1 and f[3] > z0]
        return max(ends) if ends else None

    def free_spans(self, x: float, hx: float, z0: float, z1: float, under: bool = False,
                   min_length: float = 2.0) -> list[tuple[float, float]]:
        """The stretches of [z0, z1] along which the strip |x' - x| < hx touches no footprint
        (0.3 m kept clear of each), at least ``min_length`` long: where a wall or a rail fits."""
        blocked = sorted((f[2] - 0.3, f[3] + 0.3) for f in self.footprints
                         if x + hx > f[0] and x - hx < f[1] and not (under and f[5]))
        spans, start = [], z0
        for a, c in blocked:
            if a > start:
                spans.append((start, min(a, z1)))
            start = max(start, c)
            if start >= z1:
                break
        if start < z1:
            spans.append((start, z1))
        return [(a, c) for a, c in spans if c - a >= min_length]

    def tube(self, x: float, z: float, yc: float, r: float, half_length: float, material: int, label: int,
             color, color2=(0.0, 0.0, 0.0), params=()) -> None:
        """A cylinder of radius r lying along the road (axis parallel to z) at height yc."""
        self.objects.append(self._object)
        self.rows.append((TUBE, (x, yc, z), (r, r, half_length), (1.0, 0.0), material, label, color, color2, params))

    def box(self, x: float, z: float, y0: float, y1: float, hx: float, hz: float, material: int, label: int,
            color, color2=(0.0, 0.0, 0.0), params=(), yaw: float = 0.0) -> None:
        """An upright box centred at (x, z), from y0 to y1, rotated by tan(yaw/2) = ``yaw``."""
        c = (1.0 - yaw * yaw) / (1.0 + yaw * yaw)
        s = 2.0 * yaw / (1.0 + yaw * yaw)
        self.objects.append(self._object)
        self.rows.append((BOX, (x, 0.5 * (y0 + y1), z), (hx, 0.5 * (y1 - y0), hz), (c, s), material, label, color, color2, params))

    def cylinder(self, x: float, z: float, y0: float, y1: float, r: float, material: int, label: int,
                 color, color2=(0.0, 0.0, 0.0), params=()) -> None:
        """A vertical cylinder of radius r at (x, z) from y0 to y1 (top cap included)."""
        self.objects.append(self._object)
        self.rows.append((CYLINDER, (x, 0.5 * (y0 + y1), z), (r, 0.5 * (y1 - y0), r), (1.0, 0.0), material, label, color, color2, params))

    def ellipsoid(self, center, radii, material: int, label: int, color, color2=(0.0, 0.0, 0.0), params=()) -> None:
        """An axis-aligned ellipsoid."""
        self.objects.append(self._object)
        self.rows.append((ELLIPSOID, tuple(center), tuple(radii), (1.0, 0.0), material, label, color, color2, params))

    def build(self) -> PrimTable:
        n = len(self.rows)
        params = np.zeros((n, 6), dtype=np.float32)
        for i, row in enumerate(self.rows):
            params[i, : len(row[8])] = row[8]
        kind = np.array([r[0] for r in self.rows], dtype=np.int8).reshape(n)
        center = np.array([r[1] for r in self.rows], dtype=np.float64).reshape(n, 3)
        half = np.array([r[2] for r in self.rows], dtype=np.float64).reshape(n, 3)
        yaw = np.array([r[3] for r in self.rows], dtype=np.float64).reshape(n, 2)
        ext = extents(kind, half, yaw)
        return PrimTable(
            kind=kind, center=center, half=half, yaw=yaw,
            material=np.array([r[4] for r in self.rows], dtype=np.int16).reshape(n),
            label=np.array([r[5] for r in self.rows], dtype=np.uint8).reshape(n),
            color=np.array([r[6] for r in self.rows], dtype=np.float32).reshape(n, 3),
            color2=np.array([r[7] for r in self.rows], dtype=np.float32).reshape(n, 3),
            params=params, lo=center - ext, hi=center + ext, obj=np.array(self.objects, dtype=np.int32).reshape(n),
        )


# --- palettes (linear albedo) -------------------------------------------------------------
PLASTER = [(0.62, 0.58, 0.50), (0.70, 0.68, 0.63), (0.55, 0.50, 0.40), (0.60, 0.47, 0.38),
           (0.45, 0.45, 0.45), (0.66, 0.60, 0.42), (0.50, 0.55, 0.58), (0.72, 0.70, 0.66)]
BRICK = [(0.42, 0.18, 0.12), (0.50, 0.30, 0.20), (0.55, 0.42, 0.30), (0.35, 0.16, 0.12)]
PAINT = [(0.78, 0.78, 0.76), (0.52, 0.53, 0.55), (0.04, 0.04, 0.05), (0.22, 0.22, 0.24),
         (0.55, 0.05, 0.04), (0.06, 0.14, 0.42), (0.05, 0.07, 0.18), (0.10, 0.25, 0.12),
         (0.62, 0.56, 0.45), (0.70, 0.45, 0.05)]
CLOTHES = [(0.05, 0.05, 0.08), (0.10, 0.12, 0.25), (0.45, 0.05, 0.05), (0.55, 0.55, 0.55),
           (0.15, 0.25, 0.12), (0.60, 0.50, 0.30), (0.30, 0.18, 0.10), (0.70, 0.68, 0.62)]
SKIN = [(0.60, 0.42, 0.32), (0.45, 0.30, 0.20), (0.25, 0.15, 0.10), (0.70, 0.52, 0.42)]
LEAF = [(0.10, 0.22, 0.06), (0.14, 0.26, 0.08), (0.08, 0.17, 0.07), (0.18, 0.24, 0.07)]
SIGN = [(0.60, 0.04, 0.03), (0.04, 0.12, 0.50), (0.75, 0.62, 0.05), (0.80, 0.80, 0.78)]


def pick(rng: np.random.Generator, palette: list, jitter: float = 0.08) -> tuple[float, float, float]:
    base = palette[int(rng.integers(len(palette)))]
    k = 1.0 + jitter * (2.0 * rng.random() - 1.0)
    return tuple(min(1.0, c * k) for c in base)  # type: ignore[return-value]


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * rng.random()


