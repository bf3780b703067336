"""The synthetic street-scene generator: frames, contract samples, a dataset and a disk writer.

A frame is fully determined by ``(seed, split, index)``: the scene layout, the camera rig, the
sensor noise and the LiDAR dropout each come from their own stream of NumPy's PCG64 generator
seeded with ``SeedSequence([seed, split_id, index, stream])``, and rendering uses only IEEE
basic operations, so the same frame comes out bit for bit on any machine.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from slimdepth.data.base import DepthDataset, Transform
from slimdepth.data.registry import register_dataset
from slimdepth.data.sample import make_sample
from slimdepth.data.synthetic import lidar as lidar_sim
from slimdepth.data.synthetic.camera import EFFECTS, CameraOptions, CameraParams, develop, sample_camera
from slimdepth.data.synthetic.raycast import Hits, PinholeGrid, cast
from slimdepth.data.synthetic.scene import (
    CLASS_NAMES,
    PID_CURB,
    PID_ROAD,
    PID_SIDEWALK,
    PID_SKY,
    PID_YARD,
    ROAD,
    SIDEWALK,
    SKY,
    STEREO_BASELINE,
    VEGETATION,
    Scene,
    SceneOptions,
    sample_scene,
)
from slimdepth.data.synthetic.shading import shade
from slimdepth.errors import ConfigError, DataError
from slimdepth.fileio import write_depth, write_intrinsics, write_rgb, write_seg
from slimdepth.options import MAX_SIDE, parse_size, suggest

GENERATOR_VERSION = 2
SPLITS = {"train": 0, "val": 1, "test": 2}
COMPONENTS = ("depth", "seg", "lidar", "right")
LIDAR_DROPOUT = 0.1
DEFAULT_SIZE = (192, 640)
MAX_PIXELS = 16_000_000  # a frame needs ~250 bytes per pixel while rendering
_STREAM_SCENE, _STREAM_LEFT_NOISE, _STREAM_RIGHT_NOISE, _STREAM_LIDAR, _STREAM_CAMERA = range(5)


@dataclass
class Frame:
    """One rendered frame. Arrays are NumPy; missing components are ``None``."""

    index: int
    rgb: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3) float64
    depth: np.ndarray | None = None  # (H, W) float32 metres, camera z; 0 = sky
    seg: np.ndarray | None = None  # (H, W) uint8 class ids, 255 = ignore
    lidar: np.ndarray | None = None  # (H, W) float32 sparse metres, 0 = no return
    right: np.ndarray | None = None  # (H, W, 3) uint8, camera 0.54 m to the right
    camera_rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # camera-to-world
    camera_origin: np.ndarray = field(default_factory=lambda: np.zeros(3))  # world (road: y = 0)
    scene: Scene | None = None


def _rng(seed: int, split: int, index: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, split, index, stream])))


def _labels(scene: Scene, grid: PinholeGrid, hits: Hits) -> np.ndarray:
    pid = hits.pid
    seg = np.full(pid.shape, SKY, dtype=np.uint8)
    prim = pid >= 0
    seg[prim] = scene.prims.label[pid[prim]]
    seg[pid == PID_ROAD] = ROAD
    seg[(pid == PID_SIDEWALK) | (pid == PID_CURB)] = SIDEWALK
    yard = pid == PID_YARD
    if yard.any():
        x = np.float32(grid.origin[0]) + hits.t[yard] * grid.dx[yard]
        seg[yard] = np.where(scene.yard_is_grass(x), VEGETATION, SIDEWALK)
    return seg


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _thread_pool() -> ThreadPoolExecutor:
    """One helper thread per process (recreated after a fork, e.g. in DataLoader workers)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="slimdepth-right"))
    return _POOL[1]


class SceneGenerator:
    """Renders frames of random KITTI-like street scenes.

    ``size`` is (H, W); ``split`` ("train", "val", "test") selects a disjoint family of frames
    for the same seed; ``components`` chooses what to render besides the RGB image (each costs
    time: ``right`` renders a second view, ``lidar`` casts a 64-beam scan). With ``threaded``
    the right view renders on a helper thread (its compiled loops release the GIL), which
    uses a second core; the output is identical either way.
    """

    def __init__(self, size: tuple[int, int] | str = DEFAULT_SIZE, seed: int = 0, split: str = "train",
                 components: Iterable[str] = COMPONENTS, lidar_dropout: float = LIDAR_DROPOUT,
                 threaded: bool = True, scene_options: SceneOptions | None = None,
                 camera_options: CameraOptions | None = None) -> None:
        self.size = parse_size(size, max_side=None)  # bounded below, in pixels too
        h, w = self.size
        if h < 8 or w < 8 or h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_PIXELS:
            raise ConfigError(f"synthetic frames must be 8 to {MAX_SIDE} pixels a side and at most "
                              f"{MAX_PIXELS // 1_000_000} Mpixels, got {h}x{w}")
        if not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ConfigError(f"seed must be an integer in [0, 2^63), got {seed!r}")
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.components = tuple(components)
        bad = [c for c in self.components if c not in COMPONENTS]
        if bad:
            raise ConfigError(f"unknown component(s) {', '.join(bad)}; choose from {', '.join(COMPONENTS)}")
        if not 0.0 <= lidar_dropout < 1.0:
            raise ConfigError(f"lidar dropout must be in [0, 1), got {lidar_dropout}")
        self.seed = int(seed)
        self.split = split
        self.lidar_dropout = lidar_dropout
        self.threaded = threaded and (os.cpu_count() or 1) > 1
        self.scene_options = scene_options or SceneOptions()
        self.camera_options = camera_options or CameraOptions()

    def scene(self, index: int) -> Scene:
        """The random scene of frame ``index`` (layout, rig, light)."""
        h, w = self.size
        return sample_scene(_rng(self.seed, SPLITS[self.split], index, _STREAM_SCENE), h, w, self.scene_options)

    def camera(self, index: int, scene: Scene) -> CameraParams:
        """The camera settings of frame ``index`` (exposure, white balance, blur, noise, ...)."""
        rng = _rng(self.seed, SPLITS[self.split], index, _STREAM_CAMERA)
        return sample_camera(rng, self.camera_options, scene.exposure)

    def frame(self, index: int) -> Frame:
        """Render frame ``index``."""
        if index < 0:
            raise IndexError(f"frame index must be >= 0, got {index}")
        sid = SPLITS[self.split]
        scene = self.scene(index)
        camera = self.camera(index, scene)
        h, w = self.size
        grid = PinholeGrid(scene.K, h, w, scene.camera_rotation, scene.camera_origin)
        right = None
        if "right" in self.components:
            grid.inverse  # noqa: B018 - computed once here, shared by both views
            render = lambda: self._render(scene, grid.with_origin(scene.right_camera_origin(STEREO_BASELINE)),
                                          camera, _rng(self.seed, sid, index, _STREAM_RIGHT_NOISE))  # noqa: E731
            right = _thread_pool().submit(render) if self.threaded else render
        hits = cast(scene, grid)
        rgb = develop(shade(scene, grid, hits), camera, _rng(self.seed, sid, index, _STREAM_LEFT_NOISE))
        frame = Frame(index=index, rgb=rgb, K=scene.K.copy(), scene=scene,
                      camera_rotation=np.array(scene.camera_rotation), camera_origin=np.array(scene.camera_origin))
        if "depth" in self.components:
            frame.depth = np.where(hits.pid != PID_SKY, hits.t, np.float32(0.0)).astype(np.float32)
        if "seg" in self.components:
            frame.seg = _labels(scene, grid, hits)
        if "lidar" in self.components:
            frame.lidar = lidar_sim.lidar_depth(scene, _rng(self.seed, sid, index, _STREAM_LIDAR), self.lidar_dropout)
        if right is not None:
            frame.right = right.result() if self.threaded else right()
        return frame

    @staticmethod
    def _render(scene: Scene, grid: PinholeGrid, camera: CameraParams, rng: np.random.Generator) -> np.ndarray:
        return develop(shade(scene, grid, cast(scene, grid)), camera, rng)


CAMERAS = ("kitti", "plain", "off")
SCENE_KEYS = tuple(f.name for f in fields(SceneOptions))
CAMERA_KEYS = ("camera", *EFFECTS)


def generator_options(options: dict[str, Any]) -> tuple[SceneOptions, CameraOptions]:
    """Scene and camera options from a flat ``{key: value}`` (the keys of a synthetic spec)."""
    unknown = [k for k in options if k not in SCENE_KEYS + CAMERA_KEYS]
    if unknown:
        known = SCENE_KEYS + CAMERA_KEYS
        raise ConfigError(f"unknown synthetic option {unknown[0]!r}{suggest(unknown[0], known)}; "
                          f"choose from {', '.join(known)}")
    scene = SceneOptions(**{k: v for k, v in options.items() if k in SCENE_KEYS})
    effects = {k: v for k, v in options.items() if k in EFFECTS}
    return scene, camera_options(options.get("camera", "kitti"), effects)


def camera_options(camera: str | bool, effects: dict[str, float]) -> CameraOptions:
    """The camera model of a spec: ``kitti`` (every effect at the given strengths, 1 = KITTI-like),
    ``plain`` (the first generator's exposure, gamma and dither only) or ``off`` (no effect).

    A spec string reads ``camera=off`` as the boolean false, which means ``off`` here too.
    ``plain`` and ``off`` take no effect strengths: one given with them is an error, not ignored.
    """
    if camera is False:
        camera = "off"
    if camera not in CAMERAS:
        raise ConfigError(f"synthetic: camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
    changed = sorted(k for k, v in effects.items() if v != 1.0)
    if camera != "kitti" and changed:
        raise ConfigError(f"synthetic: camera={camera} takes no effect strengths (got {', '.join(changed)}); "
                          "use camera=kitti with them")
    if camera == "plain":
        return CameraOptions(plain=True)
    if camera == "off":
        return CameraOptions.off()
    return CameraOptions.from_dict(effects)


@register_dataset("synthetic")
class SyntheticDataset(DepthDataset):
    """Procedural KITTI-like street scenes with exact ground truth, rendered on the fly.

    Options (also in a spec string, e.g. ``synthetic,num=200,size=192x640,seed=1``): ``num``
    frames, ``size`` HxW, ``seed``, ``split`` (train/val/test give disjoint frames), ``depth``
    (``dense`` ground truth or the simulated ``lidar``), and ``lidar``/``seg``/``right`` to
    include ``lidar_depth``, ``seg`` and ``right_image`` in each sample. The scene options
    (``traffic``, ``heavy``, ``vehicles``, ``structures``, ``layouts``, ``randomize``, ``haze``,
    ``contact_shadows``, ``object_shadows``, ``slopes``, ``bends``, ``road_wear``, ``vehicle_detail``: see
    :class:`~slimdepth.data.synthetic.scene.SceneOptions`) and the camera (``camera`` =
    kitti/plain/off and one strength per effect, e.g. ``jpeg=0``: see
    :class:`~slimdepth.data.synthetic.camera.CameraOptions`) choose what the frames look like.
    """

    dataset_name = "synthetic"
    eval_preset = None

    def __init__(self, num: int = 1000, size: str | tuple[int, int] = DEFAULT_SIZE, seed: int = 0,
                 split: str = "train", depth: str = "dense", lidar: bool = True, seg: bool = True,
                 right: bool = False, traffic: float = 1.0, heavy: float = 1.0, vehicles: str = "shaped", structures: bool = True,
                 layouts: str = "mixed", randomize: float = 0.0, haze: float = 1.0, contact_shadows: bool = True,
                 object_shadows: bool = False, slopes: float = 0.0, bends: float = 0.0, road_wear: float = 0.0,
                 vehicle_detail: float = 0.0, camera: str | bool = "kitti", exposure: float = 1.0,
                 white_balance: float = 1.0, color_cast: float = 1.0, vignetting: float = 1.0,
                 bloom: float = 1.0, motion_blur: float = 1.0, tone: float = 1.0, noise: float = 1.0,
                 jpeg: float = 1.0, root: str | None = None, transform: Transform | None = None) -> None:
        super().__init__(transform)
        if root is not None:
            raise ConfigError("the synthetic dataset is generated, it takes no path; "
                              "use folder:DIR for a dataset written by `slimdepth data synth`")
        if not isinstance(num, int) or num < 1:
            raise ConfigError(f"synthetic: num must be a positive integer, got {num!r}")
        if depth not in ("dense", "lidar"):
            raise ConfigError(f"synthetic: depth must be 'dense' or 'lidar', got {depth!r}")
        comps = ["depth"] + (["lidar"] if lidar or depth == "lidar" else []) + (["seg"] if seg else []) + (["right"] if right else [])
        scene_opts, camera_opts = generator_options({
            "traffic": traffic, "heavy": heavy, "vehicles": vehicles, "structures": structures, "layouts": layouts,
            "randomize": randomize, "haze": haze, "contact_shadows": contact_shadows,
            "object_shadows": object_shadows, "slopes": slopes, "bends": bends, "road_wear": road_wear,
            "vehicle_detail": vehicle_detail, "camera": camera,
            "exposure": exposure, "white_balance": white_balance, "color_cast": color_cast, "vignetting": vignetting,
            "bloom": bloom, "motion_blur": motion_blur, "tone": tone, "noise": noise, "jpeg": jpeg})
        self.generator = SceneGenerator(size, seed, split, comps, scene_options=scene_opts, camera_options=camera_opts)
        self.num = num
        self.depth_source = depth
        self.keep_lidar = bool(lidar)

    def __len__(self) -> int:
        return self.num

    def names(self) -> list[str]:
        return [f"{i:06d}" for i in range(self.num)]

    def load(self, index: int) -> dict[str, Any]:
        f = self.generator.frame(index)
        g = self.generator
        meta = {"name": f"{index:06d}", "path": f"synthetic://seed={g.seed}/{g.split}/{index}",
                "dataset": "synthetic", "orig_size": g.size, "baseline": STEREO_BASELINE}
        extras: dict[str, np.ndarray] = {}
        if f.lidar is not None and self.keep_lidar:
            extras["lidar_depth"] = f.lidar
        if f.right is not None:
            extras["right_image"] = f.right
        depth = f.lidar if self.depth_source == "lidar" else f.depth
        return make_sample(f.rgb, depth=depth, K=f.K, seg=f.seg, meta=meta, **extras)


# --- writing a dataset to disk ---------------------------------------------------------------
FOLDERS = ("rgb", "K", *COMPONENTS)  # one folder per output, named after it


def _frame_paths(out: Path, index: int, components: Iterable[str]) -> dict[str, Path]:
    stem = f"{index:06d}"
    paths = {"rgb": out / "rgb" / f"{stem}.png", "K": out / "K" / f"{stem}.txt"}
    for c in components:
        paths[c] = out / c / f"{stem}.png"
    return paths


def _dataset_meta(gen: SceneGenerator) -> dict[str, Any]:
    return {
        "generator": "slimdepth.synthetic", "version": GENERATOR_VERSION, "seed": gen.seed,
        "split": gen.split, "size": list(gen.size), "components": list(gen.components),
        "lidar_dropout": gen.lidar_dropout, "depth_encoding": "kitti", "eval_preset": None,
        "classes": list(CLASS_NAMES), "ignore_label": 255, "baseline": STEREO_BASELINE,
        "scene": asdict(gen.scene_options), "camera": asdict(gen.camera_options),
    }


_WORKER_GEN: SceneGenerator | None = None


def _init_worker(gen: SceneGenerator, pool_worker: bool = False) -> None:
    global _WORKER_GEN
    _WORKER_GEN = gen
    if pool_worker:  # Ctrl-C is the parent's to handle: it stops the pool and reports once
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_frame(args: tuple[Path, int]) -> int:
    out, index = args
    gen = _WORKER_GEN
    assert gen is not None
    f = gen.frame(index)
    paths = _frame_paths(out, index, gen.components)
    write_rgb(paths["rgb"], f.rgb)
    if f.depth is not None:
        write_depth(paths["depth"], f.depth, "kitti")
    if f.lidar is not None:
        write_depth(paths["lidar"], f.lidar, "kitti")
    if f.seg is not None:
        write_seg(paths["seg"], f.seg)
    if f.right is not None:
        write_rgb(paths["right"], f.right)
    write_intrinsics(paths["K"], f.K)  # last: a frame is complete when its K file exists
    return index


def write_synthetic(out: str | Path, num: int, size: tuple[int, int] | str = DEFAULT_SIZE, seed: int = 0,
                    split: str = "train", components: Iterable[str] = COMPONENTS, workers: int = 1,
                    progress: Callable[[int, int], None] | None = None,
                    options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``num`` frames to ``out`` in the layout the ``folder`` reader reads; resumable.

    ``workers`` processes render in parallel (at most one per CPU core: more only slow down).
    ``options`` are the scene and camera options of a dataset spec (e.g. ``{"traffic": 0.5}``).
    An existing ``out`` is resumed (complete frames are kept) when it holds a dataset made
    with the same generator settings; any other non-empty directory is refused, so no user
    file is ever overwritten. Returns a summary with the number of frames written and kept.
    """
    if not isinstance(num, int) or num < 1:
        raise ConfigError(f"--num must be a positive integer, got {num!r}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    scene_opts, camera_opts = generator_options(options or {})
    gen = SceneGenerator(size, seed, split, components, scene_options=scene_opts, camera_options=camera_opts)
    out = Path(out)
    meta = _dataset_meta(gen)
    meta_path = out / "meta.json"
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    old: dict[str, Any] = {}
    if out.exists() and any(out.iterdir()):
        if not meta_path.is_file():
            raise DataError(f"{out}: directory is not empty and holds no slimdepth dataset; refusing to write into it")
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            raise DataError(f"{meta_path}: unreadable dataset description; refusing to write into {out}") from None
        # an option added after the dataset was written took its default there
        for key, defaults in (("scene", asdict(SceneOptions())), ("camera", asdict(CameraOptions()))):
            if isinstance(old.get(key), dict):
                old[key] = {**defaults, **old[key]}
        same = {k: old.get(k) for k in meta} == meta
        if not same:
            diff = ", ".join(f"{k}={old.get(k)!r} (now {meta[k]!r})" for k in meta if old.get(k) != meta[k])
            raise DataError(f"{out}: holds a dataset made with other settings ({diff}); choose another --out")
    for stale in out.glob("*/.*"):  # temporary files of writes cut short by an interruption
        if stale.is_file() and stale.parent.name in FOLDERS:
            stale.unlink()
    todo = [i for i in range(num) if not all(p.exists() for p in _frame_paths(out, i, gen.components).values())]
    kept = num - len(todo)
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("rgb", "K", *gen.components):
        (out / folder).mkdir(exist_ok=True)
    meta_path.write_text(json.dumps({**meta, "num": max(num, int(old.get("num", 0)))}, indent=2) + "\n")
    done = 0
    if progress:
        progress(kept, num)
    if workers == 1 or len(todo) <= 1:
        _init_worker(gen)
        for i in todo:
            _write_frame((out, i))
            done += 1
            if progress:
                progress(kept + done, num)
    else:
        workers = min(workers, len(todo), os.cpu_count() or 1)
        with get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(gen, True)) as pool:
            for _ in pool.imap_unordered(_write_frame, [(out, i) for i in todo], chunksize=1):
                done += 1
                if progress:
                    progress(kept + done, num)
    return {"out": str(out), "num": num, "written": done, "kept": kept, "size": list(gen.size), "seed": seed, "split": split}
