"""Simulated 64-beam LiDAR (Velodyne HDL-64E as mounted on the KITTI car), projected to the camera.

The HDL-64E has an upper block of 32 lasers from +2.0 deg to -8.33 deg (about 1/3 deg apart) and a
lower block of 32 from -8.83 deg to -24.9 deg (about 1/2 deg apart). At KITTI's 10 Hz spin it
fires every 0.18 deg of azimuth (measured on the real sweeps in ../shared/data: median spacing
along one ring 0.180 deg, about 114k points per sweep). On KITTI it sits 0.27 m behind and 0.08 m above the left colour camera, so its
returns show the same parallax at object edges as KITTI's projected Velodyne depth.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from slimdepth.data.synthetic.raycast import SphericalGrid, cast
from slimdepth.data.synthetic.scene import PID_SKY, Scene
from slimdepth.geometry import points_to_depth_map

AZIMUTH_STEP_DEG = 0.18
MAX_RANGE = 120.0  # metres; the HDL-64E's rated range


@lru_cache(maxsize=None)
def beam_elevations() -> np.ndarray:
    """Elevation (radians) of the 64 beams, ascending."""
    upper = np.linspace(2.0, -8.33, 32)
    lower = np.linspace(-8.83, -24.9, 32)
    deg = np.sort(np.concatenate([upper, lower]))
    return deg * (np.pi / 180.0)


def azimuths_for(scene: Scene, margin_deg: float = 3.0) -> np.ndarray:
    """Azimuths (radians, step 0.18 deg) covering the camera's horizontal field of view."""
    K = scene.K
    half = max(K[0, 2] + 0.5, scene.width - 0.5 - K[0, 2]) / K[0, 0]
    limit = np.degrees(np.arctan(half)) + margin_deg
    n = int(np.ceil(limit / AZIMUTH_STEP_DEG))
    return np.arange(-n, n + 1) * (AZIMUTH_STEP_DEG * np.pi / 180.0)


def beams_for(scene: Scene, margin_deg: float = 1.0) -> np.ndarray:
    """Elevations of the beams that can land in the camera image (all but the lowest ones).

    The scanner sits behind and above the camera, so a return seen at elevation e from it is
    seen at least as steeply downwards from the camera: beams more than ``margin_deg`` below the
    image's lowest row can never project into it, and casting them is wasted work.
    """
    K = scene.K
    bottom = np.arctan((scene.height - 0.5 - K[1, 2]) / K[1, 1])  # below the optical axis, radians
    elevations = beam_elevations()
    return elevations[elevations >= -(bottom + np.radians(margin_deg + 1.0))]


def scan(scene: Scene, all_beams: bool = False) -> np.ndarray:
    """World-frame points (N, 3) of the LiDAR returns in front of the car (of the beams that can
    reach the image, or of all 64 with ``all_beams``)."""
    beams = beam_elevations() if all_beams else beams_for(scene)
    grid = SphericalGrid(beams, azimuths_for(scene), scene.rig_rotation, scene.lidar_origin())
    hits = cast(scene, grid, max_t=MAX_RANGE)  # returns beyond the range are dropped anyway
    ok = (hits.pid != PID_SKY) & (hits.t <= MAX_RANGE)
    t = hits.t[ok].astype(np.float64)
    o = grid.origin
    return np.stack([o[0] + t * grid.dx[ok], o[1] + t * grid.dy[ok], o[2] + t * grid.dz[ok]], 1)


def lidar_depth(scene: Scene, rng: np.random.Generator | None = None, dropout: float = 0.0) -> np.ndarray:
    """Sparse depth map (H, W) float32 of the LiDAR returns seen from the left camera (0 = none).

    ``dropout`` removes that fraction of returns at random (real sweeps lose returns on glass and
    dark paint; 0.1 matches KITTI's ~16k in-image points at 375x1242). Depth is the camera z of
    the return, rasterised with the nearest return kept per pixel.
    """
    pts = scan(scene)
    if dropout > 0:
        if rng is None:
            raise ValueError("dropout needs a random generator")
        pts = pts[rng.random(len(pts)) >= dropout]
    r = scene.camera_rotation
    rel = pts - np.asarray(scene.camera_origin)
    cam = [rel[:, 0] * r[0][i] + rel[:, 1] * r[1][i] + rel[:, 2] * r[2][i] for i in range(3)]
    K = scene.K
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[0] / cam[2] + K[0, 2]
        v = K[1, 1] * cam[1] / cam[2] + K[1, 2]
    return points_to_depth_map(u, v, cam[2], scene.height, scene.width)
