"""Random KITTI-like street scenes: a layout of analytic primitives, sun, sky and camera rig.

World frame: x right, y up, z forward along the road, metres; the road surface is y = 0 and
the rig stands over x = 0, z = 0. Everything here is drawn from one ``numpy`` ``Generator`` and
uses rational arithmetic only (rotations by the Cayley transform, no sin/cos), so a frame is
the same bit for bit on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimdepth.data.synthetic import structures, vehicles
from slimdepth.data.synthetic.primitives import (  # noqa: F401 - re-exported for the renderer
    BOX, BRICK, CAR, CLASS_NAMES, CLOTHES, CONCRETE, CYLINDER, ELLIPSOID, FACADE, FOLIAGE, HEAD, IGNORE, LEAF,
    PAINT, PEDESTRIAN, PERSON, PID_CURB, PID_ROAD, PID_SIDEWALK, PID_SKY, PID_YARD, PLASTER, POLE, POLE_METAL,
    RAIL, ROAD, SIDEWALK, SIGN, SIGN_PANEL, SKIN, SKY, TANK, TRUNK, TUBE, VEGETATION, VEHICLE, BUILDING, PrimBuilder,
    PrimTable, pick as _pick, uniform as _u,
)
from slimdepth.data.synthetic.terrain import Bend, Slope, place_on_road
from slimdepth.errors import ConfigError
from slimdepth.geometry import KITTI_CAMERA_HEIGHT, kitti_like_intrinsics
from slimdepth.options import check_number

CAMERA_HEIGHT = KITTI_CAMERA_HEIGHT
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
class Marking:
    """A painted line along the road at x = ``x`` (dashed when ``dash`` > 0)."""

    x: float
    width: float
    dash: float = 0.0
    gap: float = 0.0
    phase: float = 0.0


@dataclass(frozen=True)
class RoadWear:
    """Worn asphalt (``road_wear`` frames): what makes a real road read as a road up close.

    ``tracks`` are the x of the wheel paths (two per lane, 0.8 m from its centre), ``track_gain``
    their albedo factor (polished or oily: 0.75-1.2) over ``track_width`` metres; repair
    ``patches`` fill a share of the cells of a 3.5 x 9 m grid (hashed from ``seed``) with a
    rectangle of fresher or older asphalt (albedo x ``patch_gain``); ``stains`` is the amplitude
    of blotches a metre or two across; ``tint`` colours the asphalt (real roads are not grey).
    """

    tracks: tuple[float, ...]
    track_gain: float
    track_width: float
    patches: float
    patch_gain: float
    stains: float
    tint: tuple[float, float, float]
    seed: int


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
    cloud_cover: float = 0.45  # share of the sky under clouds (0 clear, 1 overcast)
    layout: str = "urban"
    contact_shadows: bool = True  # the ground under vehicles gets little sky light
    object_shadows: bool = False  # every primitive casts, onto objects as well as the ground
    slope: Slope = Slope()  # the road ahead: flat everywhere, or changing grade (a hill or a dip)
    bend: Bend = Bend()  # the road ahead: straight everywhere, or curving left or right
    wear: RoadWear | None = None  # worn asphalt (``road_wear`` frames), else as laid
    vehicle_detail: float = 0.0  # how strongly vehicles show seams, lettering and grime (0: smooth)

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


def _buildings(b: PrimBuilder, rng: np.random.Generator, side: int, walk_edge: float, far: float, paved: bool) -> None:
    """A row of buildings (or a forest edge) along one side; side = -1 left, +1 right."""
    if rng.random() < 0.15:  # rural: a forest edge instead of houses
        setback = _u(rng, 2.0, 12.0)
        depth = 30.0
        x = walk_edge + side * (setback + depth / 2)
        top, color = _u(rng, 6.0, 16.0), _pick(rng, LEAF)
        for z0, z1 in b.free_spans(x, depth / 2, _u(rng, -30.0, -10.0), far):
            b.new_object()
            b.box(x, 0.5 * (z0 + z1), 0.0, top, depth / 2, 0.5 * (z1 - z0), FOLIAGE, VEGETATION, color,
                  (0.0, 0.0, 0.0), (1.0,))
            b.occupy(x, 0.5 * (z0 + z1), depth / 2, 0.5 * (z1 - z0), tall=True)
        return
    z = _u(rng, -45.0, -15.0)
    while z < far - 4.0:
        length = min(_u(rng, 8.0, 32.0), far - z)  # the backdrop stands at z = far
        if rng.random() < 0.22:
            z += _u(rng, 3.0, 12.0)
            continue
        bridge_end = b.overhead_span(z, z + length)
        if bridge_end is not None:  # no house under a bridge: continue behind it
            z = bridge_end + _u(rng, 1.0, 6.0)
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




#: the tangent of the largest angle a bend turns the road by (20 degrees)
BEND_TURN = 0.364
#: the scene layouts and how often each is drawn in a ``mixed`` dataset
LAYOUTS = {"urban": 0.5, "highway": 0.35, "rural": 0.15}
VEHICLE_STYLES = ("shaped", "boxes", "wheeled")
#: the largest ``heavy`` (it scales shares of 12-30%; the share is capped at 1)
HEAVY_MAX = 4.0


@dataclass(frozen=True)
class SceneOptions:
    """What the scene sampler draws (each one a step of the sim-to-real study, see docs/data.md).

    ``traffic`` scales how full the lanes are (0: one vehicle per lane at most, beyond 6 m, as
    the first generator drew; 1: KITTI-like queues with vehicles from 3 m; up to 2);
    ``heavy`` scales the share of lorries, trucks, tankers and buses among moving vehicles (1, the
    default: 12% on urban and rural roads, 30% on highways, 25% with ``traffic=0``; 0: cars, SUVs
    and vans only; up to 4, capped at all of them heavy);
    ``vehicles`` is ``shaped`` (rounded cars, tankers, lorries), ``wheeled`` (the same vehicles
    on tyres, lorries and trucks with a chassis: each scene is the shaped one plus its running gear) or
    ``boxes``; ``structures``
    adds overpasses, guard rails, barriers, walls and fences; ``layouts`` is ``mixed`` (urban
    streets, highways and rural roads) or one of them; ``randomize`` is the share of frames
    whose colours and light are drawn at random (domain randomisation); ``haze`` scales the
    density of the air (1: the first generator's thick air, half the contrast gone at 80-400 m,
    at 20-60 m on hazy days, which transferred best to real frames; 0.1: clear air, kilometres
    of visibility; 0: none);
    ``contact_shadows`` darkens the ground under vehicles (the sky cannot reach it);
    ``object_shadows`` lets every primitive (rounded cabins, tank barrels, poles and trunks too)
    cast its shadow onto objects as well as the ground (off, the default: boxes and crowns onto
    the ground only; on costs 4-16% of the frame rate and did not improve real-frame accuracy
    in our one run);
    ``slopes`` is the share of frames whose road changes grade ahead: flat to 15-60 m, then
    rising or falling by 2-7 % (a hill or a dip; objects stand on it), which a flat-road prior
    gets wrong (0, the default: every road flat, version 2's frames);
    ``bends`` is the share of frames whose road curves ahead: straight to 10-50 m, then bending
    left or right on a 80-500 m radius up to 20 degrees, and straight on (0, the default);
    ``road_wear`` is the share of frames whose asphalt is worn (:class:`RoadWear`: wheel paths,
    repair patches, stains, a tint), as real roads are (0, the default);
    ``vehicle_detail`` is how strongly every vehicle surface (glass and tyres too) shows fine detail (grime, panel seams
    and rivets, lettering, a striped tape: 0, the default, smooth paint; 1 full strength), each
    vehicle weighted 0.4-1 of it by a hash (no draws: the scene stays the one the seed drew).
    """

    traffic: float = 1.0
    heavy: float = 1.0
    vehicles: str = "shaped"
    structures: bool = True
    layouts: str = "mixed"
    randomize: float = 0.0
    haze: float = 1.0
    contact_shadows: bool = True
    object_shadows: bool = False
    slopes: float = 0.0
    bends: float = 0.0
    road_wear: float = 0.0
    vehicle_detail: float = 0.0

    def __post_init__(self) -> None:
        for name, high in (("traffic", 2.0), ("heavy", HEAVY_MAX), ("randomize", 1.0), ("haze", 10.0), ("slopes", 1.0), ("bends", 1.0),
                           ("road_wear", 1.0), ("vehicle_detail", 1.0)):
            value = check_number(getattr(self, name), f"synthetic: {name}", low=0.0, high=high,
                                 expected=f"in [0, {high:g}]")
            object.__setattr__(self, name, value)
        if self.vehicles not in VEHICLE_STYLES:
            raise ConfigError(f"synthetic: vehicles must be one of {', '.join(VEHICLE_STYLES)}, got {self.vehicles!r}")
        for name in ("structures", "contact_shadows", "object_shadows"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"synthetic: {name} must be true or false, got {getattr(self, name)!r}")
        if self.layouts != "mixed" and self.layouts not in LAYOUTS:
            raise ConfigError(f"synthetic: layouts must be mixed or one of {', '.join(LAYOUTS)}, got {self.layouts!r}")


def _layout(rng: np.random.Generator, options: SceneOptions) -> str:
    r = rng.random()  # drawn whatever the option, so the rest of the scene does not depend on it
    if options.layouts != "mixed":
        return options.layouts
    for name, share in LAYOUTS.items():
        if r < share:
            return name
        r -= share
    return "rural"


def _light(rng: np.random.Generator, haze_density: float = 1.0) -> dict:
    """Sun, sky and haze: clear, partly cloudy, overcast, hazy or low evening sun."""
    weather = ("clear", "clouds", "clouds", "overcast", "hazy", "evening")[int(rng.integers(6))]
    lx, lz = _u(rng, -1.0, 1.0), _u(rng, -1.0, 0.6)
    ly = _u(rng, 0.12, 0.35) if weather == "evening" else _u(rng, 0.35, 1.3)
    norm = float(np.sqrt(lx * lx + ly * ly + lz * lz))
    overcast = weather == "overcast"
    warm = _u(rng, 0.15, 0.35) if weather == "evening" else _u(rng, 0.0, 0.12)
    strength = 0.3 if overcast else _u(rng, 0.7, 1.0) if weather == "hazy" else _u(rng, 0.95, 1.3)
    sun_color = np.array([1.0 + warm, 0.97, 0.92 - warm], dtype=np.float32) * np.float32(strength)
    ambient = np.array([0.62, 0.68, 0.8], dtype=np.float32) * np.float32(0.75 if overcast else _u(rng, 0.3, 0.5))
    blue = _u(rng, 0.8, 1.15)
    if overcast:
        grey = _u(rng, 0.45, 0.8)
        zenith, horizon = np.array([grey, grey + 0.02, grey + 0.05]), np.array([grey + 0.15] * 3) + 0.02
    elif weather == "hazy":
        zenith, horizon = np.array([0.45, 0.55, 0.72]) * blue, np.array([0.85, 0.86, 0.86])
    else:
        zenith = np.array([0.18, 0.35, 0.75]) * blue
        horizon = np.array([0.72, 0.8, 0.9]) * _u(rng, 0.9, 1.1)
        if weather == "evening":
            horizon = horizon * np.array([1.15, 0.95, 0.75])
    cover = {"clear": _u(rng, 0.0, 0.15), "clouds": _u(rng, 0.3, 0.7), "overcast": 1.0, "hazy": _u(rng, 0.0, 0.3),
             "evening": _u(rng, 0.1, 0.5)}[weather]
    air = _u(rng, 20.0, 60.0) if weather == "hazy" else _u(rng, 80.0, 400.0)  # metres where x = 1
    haze = air / haze_density if haze_density > 0 else float("inf")
    return {"sun": (lx / norm, ly / norm, lz / norm), "sun_color": sun_color, "ambient": ambient,
            "sky_zenith": np.minimum(zenith, 1.0).astype(np.float32),
            "sky_horizon": np.minimum(horizon, 1.0).astype(np.float32), "cloud_cover": cover, "haze_distance": haze}


def _randomize(rng: np.random.Generator, prims: PrimTable, light: dict, ground: dict) -> None:
    """Domain randomisation: every albedo, the light colours and the sky drawn at random."""
    n = len(prims)
    prims.color[:] = rng.uniform(0.03, 0.85, size=(n, 3)).astype(np.float32)
    prims.color2[:] = rng.uniform(0.02, 0.6, size=(n, 3)).astype(np.float32)
    prims.__post_init__()  # refresh the channel-first copies
    light["sun_color"] = (rng.uniform(0.4, 1.4, 3) * rng.uniform(0.6, 1.2)).astype(np.float32)
    light["ambient"] = (rng.uniform(0.2, 0.8, 3) * rng.uniform(0.4, 1.0)).astype(np.float32)
    light["sky_zenith"] = rng.uniform(0.1, 0.95, 3).astype(np.float32)
    light["sky_horizon"] = rng.uniform(0.3, 1.0, 3).astype(np.float32)
    for key in ground:
        ground[key] = rng.uniform(0.05, 0.6, 3).astype(np.float32)


def _street_furniture(b: PrimBuilder, rng: np.random.Generator, road_left: float, road_right: float,
                      walk_left: float, walk_right: float, far: float, trees: float, poles: bool) -> None:
    """Poles, signs and trees on the sidewalks (outside the curbs: side -1 is x < road_left)."""
    for side, edge, outer in ((-1, road_left, walk_left), (1, road_right, walk_right)):
        z = _u(rng, 0.0, 20.0)
        while poles and z < 0.7 * far:
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
        if rng.random() < trees:
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
                low = 4.3 if min(abs(x - road_left), abs(x - road_right)) < rxz else 2.7
                crown_y = max(_u(rng, 2.0, 3.5) + 0.7 * ry, low + ry)
                b.new_object()
                b.cylinder(x, z, 0.0, crown_y - 0.2 * ry, trunk_r, TRUNK, VEGETATION,
                           _pick(rng, [(0.22, 0.15, 0.09), (0.18, 0.16, 0.13)]))
                b.ellipsoid((x, crown_y, z), (rxz, ry, rxz), FOLIAGE, VEGETATION, _pick(rng, LEAF),
                            (0.0, 0.0, 0.0), (0.0,))
                b.occupy(x, z, trunk_r + 0.2, trunk_r + 0.2)
                z += _u(rng, 7.0, 16.0)


def _pedestrians(b: PrimBuilder, rng: np.random.Generator, road_left: float, road_right: float,
                 walk_left: float, walk_right: float, count: int) -> None:
    """People on the sidewalks, sometimes crossing the road."""
    for _ in range(count):
        side = -1 if rng.random() < 0.5 else 1
        if rng.random() < 0.12:
            x = _u(rng, road_left + 1.0, road_right - 1.0)
        else:
            edge, outer = (road_left, walk_left) if side < 0 else (road_right, walk_right)
            x = _u(rng, min(edge, outer) + 0.3, max(edge, outer) - 0.3)
        z = _u(rng, 4.0, 45.0)
        h = _u(rng, 1.5, 1.95)
        r = _u(rng, 0.17, 0.24)
        if not b.is_free(x, z, r + 0.15, under=True):
            continue
        b.occupy(x, z, r, r)
        b.new_object()
        b.cylinder(x, z, 0.0, 0.86 * h, r, PERSON, PEDESTRIAN, _pick(rng, CLOTHES), _pick(rng, CLOTHES[:3], 0.3),
                   (0.48 * h,))
        hr = 0.065 * h
        b.ellipsoid((x, 0.86 * h + 0.9 * hr, z), (hr * 0.9, hr, hr * 0.9), HEAD, PEDESTRIAN, _pick(rng, SKIN),
                    _pick(rng, [(0.03, 0.02, 0.02), (0.2, 0.12, 0.05), (0.5, 0.4, 0.2)]))


def sample_scene(rng: np.random.Generator, height: int, width: int, options: SceneOptions | None = None) -> Scene:
    """Draw a random street scene and camera rig for an image of ``height`` x ``width``.

    Three layouts: ``urban`` streets (buildings, parked cars, sidewalks, people), ``highway``
    (up to four lanes each way split by a barrier, guard rails, walls or trees beside, often an
    overpass) and ``rural`` roads (fields, forest edges, fences).
    """
    opts = options or SceneOptions()
    b = PrimBuilder()
    layout = _layout(rng, opts)
    highway, rural = layout == "highway", layout == "rural"
    shaped, wheels = opts.vehicles != "boxes", opts.vehicles == "wheeled"
    if highway:
        lane_w, per_side = _u(rng, 3.4, 3.8), 2 + int(rng.integers(3))
        n_lanes, n_oncoming, median = 2 * per_side, per_side, _u(rng, 0.8, 1.6)
    elif rural:
        lane_w, n_lanes, median = _u(rng, 2.9, 3.4), 2, 0.0
        n_oncoming = 1
    else:
        lane_w, n_lanes, median = _u(rng, 3.0, 3.8), (2, 2, 3, 4)[int(rng.integers(4))], 0.0
        n_oncoming = n_lanes // 2
    ego = int(rng.integers(n_oncoming, n_lanes))
    # lane k spans [x_lane(k), x_lane(k) + lane_w]; a median (highways) separates the directions
    lanes_left = -(ego + 0.5) * lane_w - median + _u(rng, -0.35, 0.35)

    def x_lane(k: int) -> float:
        return lanes_left + k * lane_w + (median if k >= n_oncoming else 0.0)

    lanes_right = x_lane(n_lanes - 1) + lane_w
    park = [0.0, 0.0] if highway or rural else [_u(rng, 2.0, 2.5) if rng.random() < 0.6 else 0.0 for _ in range(2)]
    shoulder = _u(rng, 0.5, 3.0) if highway else _u(rng, 0.2, 0.8) if rural else 0.3
    road_left, road_right = lanes_left - park[0] - shoulder, lanes_right + park[1] + shoulder
    curb = _u(rng, 0.02, 0.06) if highway or rural else _u(rng, 0.10, 0.18)
    verge = (1.0, 4.0) if highway or rural else (1.5, 4.5)
    walk_left, walk_right = road_left - _u(rng, *verge), road_right + _u(rng, *verge)
    yard_grass = (True, True) if highway or rural else (bool(rng.random() < 0.5), bool(rng.random() < 0.5))
    far = _u(rng, 110.0, 230.0)

    # Lane markings: solid centre line, dashed lines between same-direction lanes, edge lines.
    markings: list[Marking] = []
    dash, gap = _u(rng, 3.0, 6.0), _u(rng, 6.0, 12.0)
    for k in range(1, n_lanes):
        if k == n_oncoming and median:  # solid lines along both sides of the median
            markings += [Marking(x_lane(k) - median + 0.1, 0.15), Marking(x_lane(k) - 0.1, 0.15)]
        elif k == n_oncoming:
            markings.append(Marking(x_lane(k), 0.15))
        else:
            markings.append(Marking(x_lane(k), 0.12, dash, gap, _u(rng, 0.0, dash + gap)))
    if rng.random() < (0.95 if highway else 0.7):
        markings += [Marking(lanes_left - 0.1, 0.15), Marking(lanes_right + 0.1, 0.15)]
    crosswalk = None
    if not (highway or rural) and rng.random() < 0.25:
        z0 = _u(rng, 8.0, 40.0)
        crosswalk = (z0, z0 + _u(rng, 3.0, 5.0))

    # Structures first (they constrain everything else): a bridge, the median barrier, rails.
    if opts.structures:
        if rng.random() < (0.45 if highway else 0.12 if rural else 0.15):
            structures.overpass(b, rng, walk_left, walk_right, 15.0, min(90.0, far - 30.0))
        if highway and median:
            structures.barrier(b, rng, x_lane(n_oncoming) - median / 2, -10.0, far - 5.0)
        for side, edge, outer in ((-1, road_left, walk_left), (1, road_right, walk_right)):
            rail = highway and rng.random() < 0.8 or rural and rng.random() < 0.3
            if rail:
                x = edge + side * _u(rng, 0.2, 0.5)
                for z0, z1 in b.free_spans(x, 0.15, -5.0, far - 5.0, under=True):
                    structures.guard_rail(b, rng, x, z0, z1, curb)
            if (highway or rural) and rng.random() < 0.6:
                x = outer + side * _u(rng, 0.0, 2.0)
                z_start = _u(rng, -10.0, 30.0)
                for z0, z1 in b.free_spans(x + side * 0.5, 0.6, z_start, min(far - 5.0, z_start + _u(rng, 30.0, 150.0))):
                    structures.roadside_wall(b, rng, x, z0, z1, 0.0, side)

    # Beside the road: buildings in towns, forest, fields or nothing on highways and rural roads;
    # a backdrop where the street ends.
    for side, edge, grass in ((-1, walk_left, yard_grass[0]), (1, walk_right, yard_grass[1])):
        if not (highway or rural) or rng.random() < 0.5:
            _buildings(b, rng, side, edge + side * (0.0 if not (highway or rural) else _u(rng, 4.5, 25.0)), far,
                       not grass)
    b.new_object()
    b.occupy(0.0, far + 15.0, 250.0, 15.0, tall=True)
    if rng.random() < (0.6 if not (highway or rural) else 0.25):
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
            kind = "car" if rng.random() < 0.75 else ("suv", "van")[int(rng.integers(2))]
            length = vehicles.LENGTHS[kind]
            x = edge - side * (0.3 + 1.0 + _u(rng, 0.0, 0.3))
            if b.is_free(x, z + length / 2, 1.0, length / 2, under=True):
                vehicles.add_vehicle(b, rng, kind, x, z + length / 2, 1.0 if rng.random() < 0.5 else -1.0,
                                     _u(rng, -0.02, 0.02), shaped, wheels)
            z += length + _u(rng, 0.6, 3.0)

    # Moving traffic, lane by lane.
    heavy = min(1.0, (0.3 if highway else 0.12) * opts.heavy)
    for lane in range(n_lanes):
        vehicles.lane_traffic(b, rng, x_lane(lane) + lane_w / 2, -1.0 if lane < n_oncoming else 1.0, lane == ego,
                              opts.traffic * (0.5 if rural else 1.0), heavy, shaped, wheels=wheels,
                              sparse_heavy=min(1.0, vehicles.SPARSE_HEAVY * opts.heavy))

    _street_furniture(b, rng, road_left, road_right, walk_left, walk_right, far,
                      trees=0.8 if highway or rural else 0.6, poles=not rural)
    if not (highway or rural):
        _pedestrians(b, rng, road_left, road_right, walk_left, walk_right, int(rng.integers(0, 7)))

    # Rig pose: height, pitch, roll and yaw jitter (KITTI: camera 1.65 m above the road).
    yaw = cayley_rotation(1, _u(rng, -0.025, 0.025))
    pitch = cayley_rotation(0, _u(rng, -0.012, 0.012))
    roll = cayley_rotation(2, _u(rng, -0.008, 0.008))
    rig = matmul3(yaw, matmul3(pitch, roll))
    cam_h = CAMERA_HEIGHT + _u(rng, -0.05, 0.05)

    light = _light(rng, opts.haze)
    ground = {
        "asphalt": (np.array([0.16, 0.16, 0.17]) * _u(rng, 0.8, 1.5)).astype(np.float32),
        "walk": np.array(_pick(rng, [(0.45, 0.44, 0.42), (0.5, 0.45, 0.4), (0.38, 0.38, 0.4)]), dtype=np.float32),
        "grass": np.array(_pick(rng, [(0.12, 0.22, 0.06), (0.18, 0.24, 0.08), (0.22, 0.22, 0.1), (0.3, 0.27, 0.12)]),
                          dtype=np.float32),
    }
    prims = b.build()
    exposure = _u(rng, 0.85, 1.15)
    if rng.random() < opts.randomize:
        _randomize(rng, prims, light, ground)
    # the road's shape is drawn last: without slopes and bends nothing above changes
    slope, bend = Slope(), Bend()
    if opts.slopes > 0 and rng.random() < opts.slopes:
        grade = _u(rng, 0.02, 0.07) * (1.0 if rng.random() < 0.5 else -1.0)
        slope = Slope(_u(rng, 15.0, 60.0), grade)
    if opts.bends > 0 and rng.random() < opts.bends:
        curvature = (1.0 if rng.random() < 0.5 else -1.0) / _u(rng, 80.0, 500.0)
        bend = Bend(_u(rng, 10.0, 50.0), curvature, BEND_TURN / abs(curvature))
    prims = place_on_road(prims, slope, bend)
    wear = None
    if opts.road_wear > 0 and rng.random() < opts.road_wear:  # drawn last: other frames stay as they were
        centres = [x_lane(k) + lane_w / 2 for k in range(n_lanes)]
        wear = RoadWear(
            tracks=tuple(c + side * 0.8 for c in centres for side in (-1.0, 1.0)),
            track_gain=_u(rng, 0.75, 1.2), track_width=_u(rng, 0.4, 0.8),
            patches=_u(rng, 0.0, 0.5), patch_gain=_u(rng, 0.55, 0.85) if rng.random() < 0.6 else _u(rng, 1.1, 1.3),
            stains=_u(rng, 0.1, 0.5),
            tint=(_u(rng, 0.88, 1.12), _u(rng, 0.88, 1.12), _u(rng, 0.88, 1.12)),
            seed=int(rng.integers(2**31)),
        )
    return Scene(
        height=height, width=width, K=kitti_like_intrinsics(height, width), rig_rotation=rig,
        camera_origin=(0.0, cam_h, 0.0), road_left=road_left, road_right=road_right, curb_height=curb,
        walk_left=walk_left, walk_right=walk_right, yard_grass=yard_grass, far=far, markings=markings,
        crosswalk=crosswalk, prims=prims, exposure=exposure, layout=layout, contact_shadows=opts.contact_shadows,
        object_shadows=opts.object_shadows, slope=slope, bend=bend, wear=wear,
        vehicle_detail=opts.vehicle_detail,
        **light, **ground,
    )
