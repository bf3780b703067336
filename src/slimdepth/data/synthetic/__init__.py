"""Built-in default data: procedural KITTI-like street scenes with exact ground truth."""

from slimdepth.data.synthetic.generator import (
    COMPONENTS, DEFAULT_SIZE, Frame, SceneGenerator, SyntheticDataset, write_synthetic,
)
from slimdepth.data.synthetic.scene import CLASS_NAMES, IGNORE, STEREO_BASELINE

__all__ = [
    "CLASS_NAMES", "COMPONENTS", "DEFAULT_SIZE", "IGNORE", "STEREO_BASELINE", "Frame", "SceneGenerator",
    "SyntheticDataset", "write_synthetic",
]
