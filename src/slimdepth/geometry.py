"""Pinhole camera geometry shared by readers, transforms, LiDAR simulation and point clouds.

Convention: pixel (row i, column j) has its centre at continuous coordinates (u=j, v=i), as in
OpenCV and the KITTI calibration. Camera frame: x right, y down, z forward; depth is z.
"""

from __future__ import annotations

import numpy as np

#: KITTI's rectified camera 2 intrinsics at 1242x375 (2011_09_26), the reference for scaling.
KITTI_WIDTH, KITTI_HEIGHT = 1242, 375
KITTI_FX, KITTI_CX, KITTI_CY = 721.5377, 609.5593, 172.854
KITTI_CAMERA_HEIGHT = 1.65  # the colour cameras above the road, metres (the devkit's set-up sketch)


def kitti_like_intrinsics(height: int, width: int) -> np.ndarray:
    """Square-pixel intrinsics with KITTI's horizontal field of view for an image of any size.

    fx = fy = 0.581 * W (KITTI: 721.5 / 1242) and the principal point at KITTI's relative
    position; at KITTI's aspect ratio this equals KITTI's K resized to (height, width).
    """
    f = KITTI_FX / KITTI_WIDTH * width
    cx = (KITTI_CX + 0.5) / KITTI_WIDTH * width - 0.5
    cy = (KITTI_CY + 0.5) / KITTI_HEIGHT * height - 0.5
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics after resizing an image by (sx, sy) with pixel-centre alignment."""
    out = np.array(K, dtype=np.float64, copy=True)
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (out[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


def crop_intrinsics(K: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """Intrinsics after cropping an image so that pixel (y0, x0) becomes (0, 0)."""
    out = np.array(K, dtype=np.float64, copy=True)
    out[0, 2] -= x0
    out[1, 2] -= y0
    return out


def flip_intrinsics(K: np.ndarray, width: int) -> np.ndarray:
    """Intrinsics of a horizontally flipped image (the x axis mirrored: skew changes sign)."""
    out = np.array(K, dtype=np.float64, copy=True)
    out[0, 2] = (width - 1) - out[0, 2]
    out[0, 1] = -out[0, 1]
    return out


def backproject(depth: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3D points (Nx3, camera frame) of the valid pixels of a depth map, and their (row, col).

    Only pixels with finite depth > 0 are returned.
    """
    depth = np.asarray(depth, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[rows, cols]
    fx, fy, cx, cy, s = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    y = (rows - cy) / fy * z
    x = ((cols - cx) - s * (rows - cy) / fy) / fx * z
    return np.stack([x, y, z], axis=1), np.stack([rows, cols], axis=1)


def project(points: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project Nx3 camera-frame points: returns (u, v) Nx2 and depth z (N,)."""
    pts = np.asarray(points, dtype=np.float64)
    z = pts[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = pts @ np.asarray(K, dtype=np.float64).T
        uv = uvw[:, :2] / uvw[:, 2:3]
    return uv, z


def points_to_depth_map(
    u: np.ndarray, v: np.ndarray, z: np.ndarray, height: int, width: int, offset: float = 0.0
) -> np.ndarray:
    """Rasterise projected points into a sparse depth map, keeping the nearest per pixel.

    Each point lands on pixel (round(v) + offset, round(u) + offset) with NumPy's
    round-half-to-even; ``offset=-1`` reproduces the KITTI development kit's MATLAB indexing
    (as monodepth2's ``generate_depth_map`` does). Points with z <= 0 or outside the image are
    dropped; where points collide the smallest depth is kept. Returns float32 HxW, 0 = empty.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    keep = np.isfinite(u) & np.isfinite(v) & np.isfinite(z) & (z > 0)
    col = np.round(u[keep]) + offset
    row = np.round(v[keep]) + offset
    zk = z[keep]
    inside = (col >= 0) & (row >= 0) & (col < width) & (row < height)
    flat = row[inside].astype(np.int64) * width + col[inside].astype(np.int64)
    zk = zk[inside]
    depth = np.full(height * width, np.inf)
    np.minimum.at(depth, flat, zk)
    depth[~np.isfinite(depth)] = 0.0
    return depth.reshape(height, width).astype(np.float32)
