"""Vehicles of the synthetic street scenes: shapes, sizes and how they fill the lanes.

Sizes follow real fleets (European cars 3.8-4.9 m long and 1.7-1.9 m wide, vans up to 6 m,
lorries and tankers 2.5 m wide and 3.2-4 m tall, articulated trucks up to 16.5 m). A ``shaped``
car is a lower body with a rounded cabin (the upper half of an ellipsoid), a tanker a barrel
lying on a chassis behind its cab, a lorry a cab with a tarpaulin box and a striped underrun
bar; ``boxes`` draws the older two-box vehicles. With ``wheels`` every vehicle also stands on
tyres (dark boxes from the road up, where its sides paint its wheels, plus the rear axles of
lorries, trucks and tankers) and heavy ones show a chassis under the load: a real vehicle meets
the road at its tyres, and under a lorry one sees axles and frame, not the road beyond. Traffic comes in queues: in dense traffic the
first vehicle of a lane stands a few metres away and the next ones follow with short gaps, as
in the congested drives KITTI recorded.
"""

from __future__ import annotations

import numpy as np

from slimdepth.data.synthetic.primitives import (
    CAR, PAINT, TANK, VEHICLE, PrimBuilder, pick, uniform,
)

#: the share of heavy vehicles in sparse traffic (``traffic=0``, the first generator's)
SPARSE_HEAVY = 0.25
#: vehicle kinds and their largest length (m), for placing them without overlaps
LENGTHS = {"car": 4.9, "suv": 4.95, "van": 6.0, "lorry": 10.8, "truck": 16.5, "tanker": 13.5, "bus": 12.0}
GLASS = (0.03, 0.04, 0.05)
#: tarpaulin and box colours of lorries (red, blue, white, grey, green, yellow)
TARP = [(0.45, 0.04, 0.03), (0.05, 0.12, 0.40), (0.75, 0.75, 0.73), (0.40, 0.40, 0.40), (0.08, 0.22, 0.10),
        (0.70, 0.55, 0.05)]
#: tank shells: white, aluminium, grey, dark
SHELL = [(0.80, 0.80, 0.78), (0.60, 0.62, 0.64), (0.45, 0.46, 0.47), (0.20, 0.21, 0.22)]
# vehicle style flags (params[5]): plain, striped rear underrun bar, tarpaulin fabric, running gear
# (tyres and chassis: their colour only, and a grey hub on a tyre's outer face)
PLAIN, STRIPES, FABRIC, GEAR = 0.0, 1.0, 2.0, 3.0
RUBBER = (0.035, 0.035, 0.038)
#: distance between the axles of a tandem or tridem (m), and the centre of twin tyres from the
#: centre line (their outer faces 1.2 m out: inside a lorry's 2.5 m load, past a tanker's chassis)
AXLE_GAP, TWIN_TRACK = 1.35, 0.92


def draw_kind(rng: np.random.Generator, heavy: float) -> str:
    """A vehicle kind; ``heavy`` is the share of lorries, trucks, tankers and buses."""
    r = rng.random()
    if r >= heavy:
        return ("car", "car", "car", "suv", "van")[int(rng.integers(5))]
    return ("lorry", "truck", "tanker", "bus")[int(rng.integers(4))]


def add_vehicle(b: PrimBuilder, rng: np.random.Generator, kind: str, x: float, z: float, facing: float,
                yaw: float, shaped: bool = True, wheels: bool = False) -> None:
    """Add a vehicle centred at (x, z) whose front points along +z (facing=1) or -z (facing=-1);
    ``wheels`` puts it on tyres (it draws nothing more from ``rng``: the scene is otherwise the same)."""
    b.new_object()
    b.occupy(x, z, 1.35, LENGTHS[kind] / 2 + 0.2)  # generous: covers every size and small yaws
    paint = pick(rng, PAINT)
    if kind == "bus":  # one box in both styles
        length, height = uniform(rng, 10.0, 12.0), uniform(rng, 2.9, 3.2)
        b.box(x, z, 0.3, height, 1.25, length / 2, VEHICLE, CAR, paint, GLASS, (1.1, 2.55, 0.5, facing, 0.15), yaw)
        if wheels:
            _painted_tyres(b, x, z, yaw, length / 2, 1.25, 0.5, 0.15)
    elif not shaped:
        _boxy(b, rng, kind, x, z, facing, yaw, paint)
    elif kind == "car":
        length, width, height = uniform(rng, 3.8, 4.9), uniform(rng, 1.7, 1.85), uniform(rng, 1.4, 1.52)
        belt = uniform(rng, 0.86, 0.96)
        b.box(x, z, 0.2, belt, width / 2, length / 2, VEHICLE, CAR, paint, GLASS, (0.0, 0.0, 0.31, facing, 0.0), yaw)
        cab = uniform(rng, 0.5, 0.62) * length
        b.ellipsoid((x, belt, z - facing * 0.05 * length), (width / 2 - 0.06, height - belt, cab / 2), VEHICLE, CAR,
                    paint, GLASS, (0.0, 0.0, 0.0, facing, 0.0))
        if wheels:
            _painted_tyres(b, x, z, yaw, length / 2, width / 2, 0.31, 0.1)
    elif kind == "suv":
        length, width, height = uniform(rng, 4.4, 4.95), uniform(rng, 1.8, 1.95), uniform(rng, 1.6, 1.8)
        belt = uniform(rng, 1.0, 1.1)
        b.box(x, z, 0.25, belt, width / 2, length / 2, VEHICLE, CAR, paint, GLASS, (0.0, 0.0, 0.36, facing, 0.0), yaw)
        cab = uniform(rng, 0.6, 0.7) * length
        b.box(x, z - facing * 0.08 * length, belt, height, width / 2 - 0.08, cab / 2, VEHICLE, CAR, paint, GLASS,
              (belt, height - 0.08, 0.0, facing, 0.1), yaw)
        if wheels:
            _painted_tyres(b, x, z, yaw, length / 2, width / 2, 0.36, 0.11)
    elif kind == "van":
        length, width, height = uniform(rng, 4.8, 6.0), uniform(rng, 1.9, 2.05), uniform(rng, 1.9, 2.6)
        b.box(x, z, 0.22, height, width / 2, length / 2, VEHICLE, CAR, paint, GLASS,
              (0.52 * height, 0.85 * height, 0.35, facing, 0.12), yaw)
        if wheels:
            _painted_tyres(b, x, z, yaw, length / 2, width / 2, 0.35, 0.11)
    else:
        _heavy(b, rng, kind, x, z, facing, yaw, paint, wheels)


def _tyres(b: PrimBuilder, x: float, z: float, yaw: float, axles, track: float, r: float, half_width: float,
           half_length: float | None = None) -> None:
    """A pair of tyres per axle under a vehicle part centred at (x, z) and turned like it by ``yaw``:
    axles at the part's local z in ``axles``, each tyre ``track`` (its centre) from the centre line,
    radius ``r``, touching the road (a tyre is a box, 0.85 r long each way unless ``half_length``
    says less: dark rubber with a grey hub on its outer face, the side params[3] names)."""
    c, s = (1.0 - yaw * yaw) / (1.0 + yaw * yaw), 2.0 * yaw / (1.0 + yaw * yaw)
    hz = 0.85 * r if half_length is None else half_length
    for lz in axles:
        for lx in (-track, track):  # the part's local frame turned back into the world's
            b.box(x + c * lx + s * lz, z - s * lx + c * lz, 0.0, 2.0 * r, half_width, hz, VEHICLE, CAR, RUBBER,
                  GLASS, (0.0, 0.0, r, 1.0 if lx > 0 else -1.0, 0.0, GEAR), yaw)


def painted_wheel(half_length: float, r: float) -> float:
    """Where a vehicle box paints its wheels on its sides: local z = ± this (see shading)."""
    return half_length - min(0.75 + r, 0.3 * half_length)


def _painted_tyres(b: PrimBuilder, x: float, z: float, yaw: float, half_length: float, half_width: float, r: float,
                   tyre_half: float) -> None:
    """Tyres under a body box, right under the wheels its sides paint, just inside its sides and
    its ends (a short cab's tyres are shorter than they are tall)."""
    wz = painted_wheel(half_length, r)
    _tyres(b, x, z, yaw, (-wz, wz), half_width - tyre_half - 0.01, r, tyre_half,
           min(0.85 * r, half_length - wz - 0.05))


def _heavy(b: PrimBuilder, rng: np.random.Generator, kind: str, x: float, z: float, facing: float, yaw: float,
           paint, wheels: bool = False) -> None:
    """Lorries, articulated trucks and tankers: a cab in front, the load behind, an underrun bar;
    with ``wheels`` tyres under the cab, twin tyres under the load (one axle under a lorry's box,
    three under a trailer and the tractor's drive axle before them) and, under a lorry's or a
    truck's load, a dark chassis (a tanker has one already)."""
    cab, width = uniform(rng, 1.9, 2.4), 2.5
    cargo = {"lorry": uniform(rng, 5.0, 8.0), "truck": uniform(rng, 12.0, 13.6), "tanker": uniform(rng, 8.5, 10.5)}[kind]
    length = cab + 0.4 + cargo
    front = z + facing * (length / 2 - cab / 2)
    back = z - facing * (length / 2 - cargo / 2)
    rear = z - facing * (length / 2 - 0.1)
    b.box(x, front, 0.35, uniform(rng, 2.8, 3.3), 1.2, cab / 2, VEHICLE, CAR, paint, GLASS, (1.6, 2.5, 0.5, facing, 0.1), yaw)
    if wheels:
        _painted_tyres(b, x, front, yaw, cab / 2, 1.2, 0.5, 0.15)
        wz = painted_wheel(cargo / 2, 0.5)  # where a tanker's chassis paints its wheels
        axles = [-facing * (wz - AXLE_GAP * k) for k in range(1 if kind == "lorry" else 3)]
        if kind != "lorry":  # the tractor's drive axle under the front of the trailer
            axles.append(facing * wz)
        _tyres(b, x, back, yaw, axles, TWIN_TRACK, 0.5, 0.28)
        if kind != "tanker":  # a tanker's chassis is drawn below with its barrel
            b.box(x, back, 0.5, 1.1, 0.45, cargo / 2 - 0.25, VEHICLE, CAR, (0.05, 0.05, 0.05), GLASS,
                  (0.0, 0.0, 0.0, facing, 0.0, GEAR), yaw)
    if kind == "tanker":
        r = uniform(rng, 1.05, 1.25)
        b.box(x, back, 0.45, 1.15, 1.0, cargo / 2, VEHICLE, CAR, (0.05, 0.05, 0.05), GLASS, (0.0, 0.0, 0.5, facing, 0.0), yaw)
        b.tube(x, back, 1.15 + r, r, cargo / 2 - 0.1, TANK, CAR, pick(rng, SHELL), (0.1, 0.1, 0.1), (uniform(rng, 1.5, 3.0),))
    else:
        height = uniform(rng, 3.2, 3.9) if kind == "lorry" else uniform(rng, 3.8, 4.0)
        style = FABRIC if rng.random() < 0.6 else PLAIN
        b.box(x, back, 1.1, height, width / 2, cargo / 2, VEHICLE, CAR, pick(rng, TARP), GLASS,
              (0.0, 0.0, 0.5, facing, 0.0, style), yaw)
    b.box(x, rear, 0.4, 1.1, width / 2 - 0.05, 0.1, VEHICLE, CAR, (0.05, 0.05, 0.05), GLASS,
          (0.0, 0.0, 0.0, facing, 0.0, STRIPES), yaw)


def _boxy(b: PrimBuilder, rng: np.random.Generator, kind: str, x: float, z: float, facing: float, yaw: float,
          paint) -> None:
    """The generator's first vehicles: two boxes for a car, one for a van, a cab and a cargo box for
    every heavy vehicle (buses are one box in both styles, see :func:`add_vehicle`)."""
    if kind in ("car", "suv"):
        length, width, height = uniform(rng, 3.8, 4.9), uniform(rng, 1.65, 1.9), uniform(rng, 1.38, 1.55)
        b.box(x, z, 0.12, 0.9, width / 2, length / 2, VEHICLE, CAR, paint, GLASS, (0.0, 0.0, 0.31, facing, 0.0), yaw)
        cab = uniform(rng, 0.48, 0.58) * length
        b.box(x, z - facing * 0.06 * length, 0.9, height, width / 2 - 0.07, cab / 2, VEHICLE, CAR, paint, GLASS,
              (0.9, height - 0.06, 0.0, facing, 0.08), yaw)
    elif kind == "van":
        length, width, height = uniform(rng, 4.8, 5.6), uniform(rng, 1.9, 2.05), uniform(rng, 1.9, 2.4)
        b.box(x, z, 0.15, height, width / 2, length / 2, VEHICLE, CAR, paint, GLASS,
              (0.55 * height, 0.88 * height, 0.35, facing, 0.12), yaw)
    else:  # every heavy vehicle is a cab and a cargo box
        cargo, cab, height = uniform(rng, 5.0, 8.0), 2.2, uniform(rng, 3.2, 3.8)
        length = cargo + cab + 0.3
        front = z + facing * (length / 2 - cab / 2)
        back = z - facing * (length / 2 - cargo / 2)
        b.box(x, front, 0.3, uniform(rng, 2.7, 3.1), 1.2, cab / 2, VEHICLE, CAR, paint, GLASS, (1.5, 2.5, 0.48, facing, 0.1), yaw)
        b.box(x, back, 0.9, height, 1.25, cargo / 2, VEHICLE, CAR, pick(rng, PAINT[:2] + PAINT[4:6]), GLASS,
              (0.0, 0.0, 0.0, facing, 0.0), yaw)


def lane_traffic(b: PrimBuilder, rng: np.random.Generator, x_center: float, facing: float, ego: bool,
                 density: float, heavy: float, shaped: bool, reach: float = 90.0, wheels: bool = False,
                 sparse_heavy: float = SPARSE_HEAVY) -> None:
    """Fill one lane with a queue of vehicles.

    ``density`` 0 gives the sparse traffic of the first generator (at most one vehicle, 6-70 m
    ahead); 1 gives KITTI-like traffic, where a lane is queued (first vehicle 3-20 m ahead,
    gaps of 1.5-10 m) in about half the frames and flowing (gaps of 10-40 m) otherwise; higher
    values queue more lanes. ``heavy`` is the share of lorries, trucks, tankers and buses in
    queues and flowing traffic, ``sparse_heavy`` the share in sparse traffic.
    """
    if density <= 0.0:
        if rng.random() > (0.45 if ego else 0.5):
            return
        kind = draw_kind(rng, sparse_heavy)
        x = x_center + uniform(rng, -0.3, 0.3)
        z = uniform(rng, 9.0 if ego else 6.0, 70.0) + LENGTHS[kind] / 2
        if b.is_free(x, z, 1.4, LENGTHS[kind] / 2 + 0.3, under=True):
            add_vehicle(b, rng, kind, x, z, facing, uniform(rng, -0.03, 0.03), shaped, wheels)
        return
    if rng.random() < 0.15 / density:  # an empty lane
        return
    queued = rng.random() < min(0.5 * density, 0.9)
    # the nearest bumper: ego-lane vehicles stand ahead of the camera, others may be beside it
    z = uniform(rng, 3.0, 20.0) if ego else uniform(rng, -8.0, 18.0)
    if not queued:
        z += uniform(rng, 0.0, 30.0)
    while z < reach:
        kind = draw_kind(rng, heavy)
        half = LENGTHS[kind] / 2
        x = x_center + uniform(rng, -0.3, 0.3)
        # the vehicle's rear bumper (as seen from the camera) is at z for vehicles ahead
        zc = z + half
        if b.is_free(x, zc, 1.4, half + 0.3, under=True):
            add_vehicle(b, rng, kind, x, zc, facing, uniform(rng, -0.02, 0.02), shaped, wheels)
        z += 2 * half + (uniform(rng, 1.5, 10.0) if queued else uniform(rng, 10.0, 40.0))
