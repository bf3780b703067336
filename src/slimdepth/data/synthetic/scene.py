"""Random KITTI-like street scenes: a layout of analytic primitives, sun, sky and camera rig.

World frame: x right, y up, z forward along the road, metres; the road surface is y = 0 and
the rig stands over x = 0, z = 0. Everything here is drawn from one ``numpy`` ``Generator`` and
uses rational arithmetic only (rotations by the Cayley transform, no sin/cos), so a frame is
the same bit for bit on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimdepth.geometry import kitti_like_intrinsics
from slimdepth.labels import CLASS_NAMES, IGNORE_LABEL

# Semantic classes (train ids) of the synthetic data; IGNORE (255) for traffic-sign panels.
ROAD, SIDEWALK, BUILDING, VEGETATION, POLE, CAR, PEDESTRIAN, SKY = range(len(CLASS_NAMES))
IGNORE = IGNORE_LABEL

# Primitive kinds.
BOX, CYLINDER, ELLIPSOID = 0, 1, 2
# Materials of primitives (ground surfaces are handled analytically, see PID_*).
FACADE, VEHICLE, POLE_METAL, SIGN_PANEL, TRUNK, FOLIAGE, PERSON, HEAD = range(8)
# Special primitive ids of the z-buffer for surfaces that are not in the primitive table.
PID_SKY, PID_ROAD, PID_SIDEWALK, PID_CURB, PID_YARD = -1, -2, -3, -4, -5

CAMERA_HEIGHT = 1.65  # KITTI camera height above the road (m)
LIDAR_OFFSET = (0.0, 0.08, -0.27)  # Velodyne relative to the camera in the rig frame (KITTI)
STEREO_BASELINE = 0.54  # KITTI colour-camera baseline (m)


def cayley_rotation(axis: int, a: float) -> list[list[float]]:
    """Rotation about a coordinate axis with tan(angle/2) = a, using rational arithmetic only."""
    c = (1.0 - a * a) / (1.0 + a * a)
    s = 2.0 * a / (1.0 + a * a)
    r = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[i][i], r[i][j], r[j][i], r[j][j] = c, -s, s, c
    return r


def matmul3(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    """3x3 product in plain Python floats (no BLAS, so the bits never depend on the CPU)."""
    return [[a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] for j in range(3)] for i in range(3)]


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

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def __post_init__(self) -> None:
        # Channel-first float32 copies for per-pixel shading: ``np.take(table, pid, axis=1)``
        # on these is several times faster than gathering rows of the (N, k) arrays.
        self.centerT = np.ascontiguousarray(self.center.T, dtype=np.float32)
        self.halfT = np.ascontiguousarray(self.half.T, dtype=np.float32)
        self.yawT = np.ascontiguousarray(self.yaw.T, dtype=np.float32)
        self.colorT = np.ascontiguousarray(self.color.T, dtype=np.float32)
        self.color2T = np.ascontiguousarray(self.color2.T, dtype=np.float32)
        self.paramsT = np.ascontiguousarray(self.params.T, dtype=np.float32)


class PrimBuilder:
    """Accumulates primitives and turns them into a :class:`PrimTable`.

    It also keeps the ground footprints (x0, x1, z0, z1) that solid objects occupy, so that
    later objects can be placed only where the ground is free (no pole inside a car).
    """

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.footprints: list[tuple[float, float, float, float, bool]] = []  # ..., is_building
        self.objects: list[int] = []  # object id of each primitive (a car's body and cabin share one)
        self._object = -1

    def new_object(self) -> None:
        """Start a new object: the primitives added next belong together."""
        self._object += 1

    def occupy(self, x: float, z: float, hx: float, hz: float, tall: bool = False) -> None:
        """Mark the rectangle |x' - x| <= hx, |z' - z| <= hz as taken; ``tall`` objects (buildings,
        poles) also keep tree crowns away."""
        self.footprints.append((x - hx, x + hx, z - hz, z + hz, tall))

    def is_free(self, x: float, z: float, hx: float, hz: float | None = None) -> bool:
        """True if the rectangle of half-sizes (hx, hz) around (x, z) touches no occupied footprint."""
        hz = hx if hz is None else hz
        return not any(x + hx > x0 and x - hx < x1 and z + hz > z0 and z - hz < z1 for x0, x1, z0, z1, _ in self.footprints)

    def tall_distance(self, x: float, z: float) -> float:
        """Horizontal distance from (x, z) to the nearest tall footprint (inf if none)."""
        best = float("inf")
        for x0, x1, z0, z1, tall in self.footprints:
            if tall:
                dx = max(x0 - x, 0.0, x - x1)
                dz = max(z0 - z, 0.0, z - z1)
                best = min(best, float(np.sqrt(dx * dx + dz * dz)))
        return best

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
        ext = half.copy()
        boxes = kind == BOX
        ac, as_ = np.abs(yaw[:, 0]), np.abs(yaw[:, 1])
        ext[boxes, 0] = (ac * half[:, 0] + as_ * half[:, 2])[boxes]
        ext[boxes, 2] = (as_ * half[:, 0] + ac * half[:, 2])[boxes]
        return PrimTable(
            kind=kind, center=center, half=half, yaw=yaw,
            material=np.array([r[4] for r in self.rows], dtype=np.int16).reshape(n),
            label=np.array([r[5] for r in self.rows], dtype=np.uint8).reshape(n),
            color=np.array([r[6] for r in self.rows], dtype=np.float32).reshape(n, 3),
            color2=np.array([r[7] for r in self.rows], dtype=np.float32).reshape(n, 3),
            params=params, lo=center - ext, hi=center + ext, obj=np.array(self.objects, dtype=np.int32).reshape(n),
        )


@dataclass
class Marking:
    """A painted line along the road at x = ``x`` (dashed when ``dash`` > 0)."""

    x: float
    width: float
    dash: float = 0.0
    gap: float = 0.0
    phase: float = 0.0


@dataclass
class Scene:
    """Everything needed to render one frame from any viewpoint."""

    height: int
    width: int
    K: np.ndarray
    rig_rotation: list[list[float]]  # rig (x right, y up, z forward) to world
    camera_origin: tuple[float, float, float]
    road_left: float  # x of the left curb
    road_right: float
    curb_height: float
    walk_left: float  # x of the outer edge of the left sidewalk
    walk_right: float
    yard_grass: tuple[bool, bool]  # left, right: grass beyond the sidewalk (else paving)
    far: float  # z where the ground ends (a backdrop stands there)
    markings: list[Marking]
    crosswalk: tuple[float, float] | None
    prims: PrimTable
    sun: tuple[float, float, float]  # unit vector towards the sun
    sun_color: np.ndarray
    ambient: np.ndarray
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    haze_distance: float
    exposure: float
    asphalt: np.ndarray  # road albedo
    walk: np.ndarray  # sidewalk albedo
    grass: np.ndarray

    def yard_is_grass(self, x: np.ndarray) -> np.ndarray:
        """Whether the yard beyond the sidewalk at lateral position ``x`` is grass (else paving)."""
        return np.where(x < 0, self.yard_grass[0], self.yard_grass[1])

    @property
    def camera_rotation(self) -> list[list[float]]:
        """Camera (x right, y down, z forward) to world rotation: the rig's with y flipped."""
        r = self.rig_rotation
        return [[r[i][0], -r[i][1], r[i][2]] for i in range(3)]

    def right_camera_origin(self, baseline: float = STEREO_BASELINE) -> tuple[float, float, float]:
        """Origin of the right camera of the stereo pair (``baseline`` m along the camera x axis)."""
        r = self.rig_rotation
        return tuple(self.camera_origin[i] + r[i][0] * baseline for i in range(3))  # type: ignore[return-value]

    def lidar_origin(self) -> tuple[float, float, float]:
        """Origin of the Velodyne (mounted 0.08 m above and 0.27 m behind the camera)."""
        r = self.rig_rotation
        return tuple(self.camera_origin[i] + sum(r[i][j] * LIDAR_OFFSET[j] for j in range(3)) for i in range(3))  # type: ignore[return-value]


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


def _pick(rng: np.random.Generator, palette: list, jitter: float = 0.08) -> tuple[float, float, float]:
    base = palette[int(rng.integers(len(palette)))]
    k = 1.0 + jitter * (2.0 * rng.random() - 1.0)
    return tuple(min(1.0, c * k) for c in base)  # type: ignore[return-value]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * rng.random()


def _vehicle(b: PrimBuilder, rng: np.random.Generator, kind: str, x: float, z: float, facing: float, yaw: float) -> None:
    """Add a vehicle centred at (x, z) whose front points along +z (facing=1) or -z (facing=-1)."""
    b.new_object()
    b.occupy(x, z, 1.35, _vehicle_length(kind) / 2 + 0.2)  # generous: covers every size and small yaws
    paint = _pick(rng, PAINT)
    glass = (0.03, 0.04, 0.05)
    if kind == "car":
        length, width, height = _u(rng, 3.8, 4.9), _u(rng, 1.65, 1.9), _u(rng, 1.38, 1.55)
        b.box(x, z, 0.12, 0.9, width / 2, length / 2, VEHICLE, CAR, paint, glass, (0.0, 0.0, 0.31, facing, 0.0), yaw)
        cab = _u(rng, 0.48, 0.58) * length
        b.box(x, z - facing * 0.06 * length, 0.9, height, width / 2 - 0.07, cab / 2, VEHICLE, CAR, paint, glass,
              (0.9, height - 0.06, 0.0, facing, 0.08), yaw)
    elif kind == "van":
        length, width, height = _u(rng, 4.8, 5.6), _u(rng, 1.9, 2.05), _u(rng, 1.9, 2.4)
        b.box(x, z, 0.15, height, width / 2, length / 2, VEHICLE, CAR, paint, glass,
              (0.55 * height, 0.88 * height, 0.35, facing, 0.12), yaw)
    elif kind == "truck":
        cargo, cab, height = _u(rng, 5.0, 8.0), 2.2, _u(rng, 3.2, 3.8)
        body = _pick(rng, PAINT[:2] + PAINT[4:6])
        length = cargo + cab + 0.3
        front = z + facing * (length / 2 - cab / 2)
        back = z - facing * (length / 2 - cargo / 2)
        b.box(x, front, 0.3, _u(rng, 2.7, 3.1), 1.2, cab / 2, VEHICLE, CAR, paint, glass, (1.5, 2.5, 0.48, facing, 0.1), yaw)
        b.box(x, back, 0.9, height, 1.25, cargo / 2, VEHICLE, CAR, body, glass, (0.0, 0.0, 0.0, facing, 0.0), yaw)
    else:  # bus
        length, height = _u(rng, 10.0, 12.0), _u(rng, 2.9, 3.2)
        b.box(x, z, 0.3, height, 1.25, length / 2, VEHICLE, CAR, paint, glass, (1.1, 2.55, 0.5, facing, 0.15), yaw)


def _vehicle_length(kind: str) -> float:
    return {"car": 4.9, "van": 5.6, "truck": 10.5, "bus": 12.0}[kind]


def _buildings(b: PrimBuilder, rng: np.random.Generator, side: int, walk_edge: float, far: float, paved: bool) -> None:
    """A row of buildings (or a forest edge) along one side; side = -1 left, +1 right."""
    if rng.random() < 0.15:  # rural: a forest edge instead of houses
        setback = _u(rng, 2.0, 12.0)
        depth = 30.0
        x = walk_edge + side * (setback + depth / 2)
        z0 = _u(rng, -30.0, -10.0)
        b.new_object()
        b.box(x, 0.5 * (z0 + far), 0.0, _u(rng, 6.0, 16.0), depth / 2, 0.5 * (far - z0), FOLIAGE, VEGETATION,
              _pick(rng, LEAF), (0.0, 0.0, 0.0), (1.0,))
        b.occupy(x, 0.5 * (z0 + far), depth / 2, 0.5 * (far - z0), tall=True)
        return
    z = _u(rng, -45.0, -15.0)
    while z < far - 4.0:
        length = min(_u(rng, 8.0, 32.0), far - z)  # the backdrop stands at z = far
        if rng.random() < 0.22:
            z += _u(rng, 3.0, 12.0)
            continue
        setback = 0.0 if (paved and rng.random() < 0.5) else _u(rng, 0.5, 8.0)
        depth, height = _u(rng, 8.0, 20.0), _u(rng, 5.0, 24.0)
        x = walk_edge + side * (setback + depth / 2)
        brick = rng.random() < 0.4
        color = _pick(rng, BRICK if brick else PLASTER)
        glass = _pick(rng, [(0.05, 0.07, 0.09), (0.09, 0.10, 0.12), (0.12, 0.13, 0.16)], 0.2)
        floor_h = _u(rng, 2.8, 3.4)
        win_w, win_h = _u(rng, 0.8, 1.6), _u(rng, 1.1, 1.8)
        spacing = max(win_w + 0.8, _u(rng, 2.0, 4.0))
        shop = 1.0 if rng.random() < 0.3 else 0.0
        b.new_object()
        b.box(x, z + length / 2, 0.0, height, depth / 2, length / 2, FACADE, BUILDING, color, glass,
              (floor_h, win_w, win_h, spacing, 1.0 if brick else 0.0, shop))
        b.occupy(x, z + length / 2, depth / 2, length / 2, tall=True)
        if setback > 2.0 and rng.random() < 0.5:  # a hedge in the front yard
            hx = _u(rng, 0.3, 0.6)
            hedge_x = walk_edge + side * (_u(rng, 0.3, min(1.0, setback - 2 * hx - 0.2)) + hx)
            b.new_object()
            b.box(hedge_x, z + length / 2, 0.0, _u(rng, 0.7, 1.6), hx,
                  length / 2 - 0.5, FOLIAGE, VEGETATION, _pick(rng, LEAF), (0.0, 0.0, 0.0), (2.0,))
            b.occupy(hedge_x, z + length / 2, hx, length / 2 - 0.5)
        z += length


def sample_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Draw a random street scene and camera rig for an image of ``height`` x ``width``."""
    b = PrimBuilder()
    lane_w = _u(rng, 3.0, 3.8)
    n_lanes = (2, 2, 3, 4)[int(rng.integers(4))]
    n_oncoming = n_lanes // 2
    ego = int(rng.integers(n_oncoming, n_lanes))
    lanes_left = -(ego + 0.5) * lane_w + _u(rng, -0.35, 0.35)
    lanes_right = lanes_left + n_lanes * lane_w
    park = [_u(rng, 2.0, 2.5) if rng.random() < 0.6 else 0.0 for _ in range(2)]
    road_left, road_right = lanes_left - park[0] - 0.3, lanes_right + park[1] + 0.3
    curb = _u(rng, 0.10, 0.18)
    walk_left, walk_right = road_left - _u(rng, 1.5, 4.5), road_right + _u(rng, 1.5, 4.5)
    yard_grass = (bool(rng.random() < 0.5), bool(rng.random() < 0.5))
    far = _u(rng, 110.0, 230.0)

    # Lane markings: solid centre line, dashed lines between same-direction lanes, edge lines.
    markings: list[Marking] = []
    dash, gap = _u(rng, 3.0, 6.0), _u(rng, 6.0, 12.0)
    for k in range(1, n_lanes):
        x = lanes_left + k * lane_w
        if k == n_oncoming:
            markings.append(Marking(x, 0.15))
        else:
            markings.append(Marking(x, 0.12, dash, gap, _u(rng, 0.0, dash + gap)))
    if rng.random() < 0.7:
        markings += [Marking(lanes_left - 0.1, 0.15), Marking(lanes_right + 0.1, 0.15)]
    crosswalk = None
    if rng.random() < 0.25:
        z0 = _u(rng, 8.0, 40.0)
        crosswalk = (z0, z0 + _u(rng, 3.0, 5.0))

    # Buildings on both sides and a backdrop where the street ends.
    _buildings(b, rng, -1, walk_left, far, not yard_grass[0])
    _buildings(b, rng, +1, walk_right, far, not yard_grass[1])
    b.new_object()
    b.occupy(0.0, far + 15.0, 250.0, 15.0, tall=True)
    if rng.random() < 0.6:
        b.box(0.0, far + 15.0, 0.0, _u(rng, 10.0, 35.0), 250.0, 15.0, FACADE, BUILDING, _pick(rng, PLASTER),
              (0.08, 0.09, 0.11), (3.0, 1.2, 1.5, 3.0, 0.0, 0.0))
    else:
        b.box(0.0, far + 15.0, 0.0, _u(rng, 8.0, 20.0), 250.0, 15.0, FOLIAGE, VEGETATION, _pick(rng, LEAF),
              (0.0, 0.0, 0.0), (1.0,))

    # Parked vehicles in the parking strips (never in a traffic lane, where the ego car drives).
    for side, edge, strip in ((-1, road_left, park[0]), (1, road_right, park[1])):
        if strip == 0.0:
            continue
        z = _u(rng, -6.0, 4.0)
        while z < 90.0:
            if rng.random() < 0.3:
                z += _u(rng, 4.0, 15.0)
                continue
            kind = "car" if rng.random() < 0.85 else "van"
            length = _vehicle_length(kind)
            x = edge - side * (0.3 + 1.0 + _u(rng, 0.0, 0.3))
            _vehicle(b, rng, kind, x, z + length / 2, 1.0 if rng.random() < 0.5 else -1.0, _u(rng, -0.02, 0.02))
            z += length + _u(rng, 0.6, 3.0)

    # Moving traffic: at most one vehicle per lane.
    for lane in range(n_lanes):
        if rng.random() > (0.45 if lane == ego else 0.5):
            continue
        r = rng.random()
        kind = "car" if r < 0.75 else "van" if r < 0.87 else "truck" if r < 0.95 else "bus"
        x = lanes_left + (lane + 0.5) * lane_w + _u(rng, -0.3, 0.3)
        z = _u(rng, 9.0 if lane == ego else 6.0, 70.0) + _vehicle_length(kind) / 2
        if b.is_free(x, z, 1.4, _vehicle_length(kind) / 2 + 0.3):
            _vehicle(b, rng, kind, x, z, -1.0 if lane < n_oncoming else 1.0, _u(rng, -0.03, 0.03))

    # Street furniture and trees on the sidewalks (outside the curbs: side -1 is x < road_left).
    for side, edge, outer in ((-1, road_left, walk_left), (1, road_right, walk_right)):
        z = _u(rng, 0.0, 20.0)
        while z < 0.7 * far:
            x = edge + side * _u(rng, 0.4, 0.7)
            if not b.is_free(x, z, 0.4):
                z += _u(rng, 2.0, 6.0)
                continue
            b.new_object()
            if rng.random() < 0.6:
                b.cylinder(x, z, 0.0, _u(rng, 6.0, 9.0), _u(rng, 0.07, 0.12), POLE_METAL, POLE,
                           _pick(rng, [(0.35, 0.35, 0.36), (0.08, 0.15, 0.10), (0.55, 0.56, 0.58)]))
            else:
                top = _u(rng, 2.2, 2.8)
                b.cylinder(x, z, 0.0, top, 0.04, POLE_METAL, POLE, (0.5, 0.5, 0.52))
                b.box(x, z - 0.06, top - 0.05, top + 0.6, 0.32, 0.02, SIGN_PANEL, IGNORE, _pick(rng, SIGN),
                      (0.8, 0.8, 0.8))
            b.occupy(x, z, 0.35, 0.35, tall=True)
            z += _u(rng, 18.0, 40.0)
        if rng.random() < 0.6:
            z = _u(rng, -5.0, 10.0)
            while z < min(far, 150.0):
                in_yard = rng.random() >= 0.6
                x = outer + side * _u(rng, 0.5, 3.0) if in_yard else edge + side * _u(rng, 0.7, 1.1)
                trunk_r, rxz, ry = _u(rng, 0.12, 0.28), _u(rng, 1.3, 3.0), _u(rng, 1.6, 3.4)
                rxz = min(rxz, b.tall_distance(x, z) - 0.2)  # crowns stay clear of facades and poles
                if rxz < 1.0 or not b.is_free(x, z, trunk_r + 0.3):
                    z += _u(rng, 3.0, 8.0)
                    continue
                # crowns start above vans (2.6 m) and, where they overhang the road, above trucks
                low = 4.2 if min(abs(x - road_left), abs(x - road_right)) < rxz else 2.6
                crown_y = max(_u(rng, 2.0, 3.5) + 0.7 * ry, low + ry)
                b.new_object()
                b.cylinder(x, z, 0.0, crown_y - 0.2 * ry, trunk_r, TRUNK, VEGETATION,
                           _pick(rng, [(0.22, 0.15, 0.09), (0.18, 0.16, 0.13)]))
                b.ellipsoid((x, crown_y, z), (rxz, ry, rxz), FOLIAGE, VEGETATION, _pick(rng, LEAF),
                            (0.0, 0.0, 0.0), (0.0,))
                b.occupy(x, z, trunk_r + 0.2, trunk_r + 0.2)
                z += _u(rng, 7.0, 16.0)

    # Pedestrians on the sidewalks, sometimes crossing.
    for _ in range(int(rng.integers(0, 7))):
        side = -1 if rng.random() < 0.5 else 1
        if rng.random() < 0.12:
            x = _u(rng, road_left + 1.0, road_right - 1.0)
        else:
            edge, outer = (road_left, walk_left) if side < 0 else (road_right, walk_right)
            x = _u(rng, min(edge, outer) + 0.3, max(edge, outer) - 0.3)
        z = _u(rng, 4.0, 45.0)
        h = _u(rng, 1.5, 1.95)
        r = _u(rng, 0.17, 0.24)
        if not b.is_free(x, z, r + 0.15):
            continue
        b.occupy(x, z, r, r)
        b.new_object()
        b.cylinder(x, z, 0.0, 0.86 * h, r, PERSON, PEDESTRIAN, _pick(rng, CLOTHES), _pick(rng, CLOTHES[:3], 0.3),
                   (0.48 * h,))
        hr = 0.065 * h
        b.ellipsoid((x, 0.86 * h + 0.9 * hr, z), (hr * 0.9, hr, hr * 0.9), HEAD, PEDESTRIAN, _pick(rng, SKIN),
                    _pick(rng, [(0.03, 0.02, 0.02), (0.2, 0.12, 0.05), (0.5, 0.4, 0.2)]))

    # Rig pose: height, pitch, roll and yaw jitter (KITTI: camera 1.65 m above the road).
    yaw = cayley_rotation(1, _u(rng, -0.025, 0.025))
    pitch = cayley_rotation(0, _u(rng, -0.012, 0.012))
    roll = cayley_rotation(2, _u(rng, -0.008, 0.008))
    rig = matmul3(yaw, matmul3(pitch, roll))
    cam_h = CAMERA_HEIGHT + _u(rng, -0.05, 0.05)

    # Light: sun direction, overcast or sunny, sky colours, haze.
    lx, ly, lz = _u(rng, -1.0, 1.0), _u(rng, 0.35, 1.3), _u(rng, -1.0, 0.6)
    norm = float(np.sqrt(lx * lx + ly * ly + lz * lz))
    overcast = rng.random() < 0.2
    warm = _u(rng, 0.0, 0.12)
    sun_color = np.array([1.0 + warm, 0.97, 0.92 - warm], dtype=np.float32) * np.float32(
        0.3 if overcast else _u(rng, 0.95, 1.3))
    ambient = np.array([0.62, 0.68, 0.8], dtype=np.float32) * np.float32(0.75 if overcast else _u(rng, 0.3, 0.45))
    zenith = (np.array([0.55, 0.57, 0.6]) if overcast else np.array([0.18, 0.35, 0.75]) * _u(rng, 0.8, 1.1)).astype(np.float32)
    horizon = (np.array([0.75, 0.76, 0.78]) if overcast else np.array([0.72, 0.8, 0.9]) * _u(rng, 0.9, 1.05)).astype(np.float32)

    return Scene(
        height=height, width=width, K=kitti_like_intrinsics(height, width), rig_rotation=rig,
        camera_origin=(0.0, cam_h, 0.0), road_left=road_left, road_right=road_right, curb_height=curb,
        walk_left=walk_left, walk_right=walk_right, yard_grass=yard_grass, far=far, markings=markings,
        crosswalk=crosswalk, prims=b.build(), sun=(lx / norm, ly / norm, lz / norm), sun_color=sun_color,
        ambient=ambient, sky_zenith=zenith, sky_horizon=horizon, haze_distance=_u(rng, 90.0, 350.0),
        exposure=_u(rng, 0.85, 1.15),
        asphalt=(np.array([0.16, 0.16, 0.17]) * _u(rng, 0.8, 1.5)).astype(np.float32),
        walk=np.array(_pick(rng, [(0.45, 0.44, 0.42), (0.5, 0.45, 0.4), (0.38, 0.38, 0.4)]), dtype=np.float32),
        grass=np.array(_pick(rng, [(0.12, 0.22, 0.06), (0.18, 0.24, 0.08), (0.22, 0.22, 0.1)]), dtype=np.float32),
    )
