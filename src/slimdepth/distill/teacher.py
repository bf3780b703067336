"""A frozen teacher: any slimdepth checkpoint or run directory, run in eval mode without gradient
at its own input size, its depth resized back to the student's batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from slimdepth.errors import ConfigError
from slimdepth.loader import load_model
from slimdepth.models.checkpoint import checkpoint_paths, model_input_size, resolve_checkpoint
from slimdepth.options import parse_size

__all__ = ["Teacher"]


class Teacher:
    """A trained depth network that students learn from; it never learns itself.

    ``spec`` is a checkpoint (``NAME.safetensors``/``NAME.json``) or a run directory (its
    best checkpoint). The network runs in eval mode under ``no_grad`` with every parameter
    frozen, at ``size`` (``HxW``) or the input size its checkpoint records (else the
    student's). Calling it on a student batch (B, 3, H, W) returns ``depth`` at H x W and,
    when asked, its named ``features`` at the teacher's own resolution.
    """

    def __init__(self, spec: str | Path, device: str | torch.device = "cpu", size: str | Sequence[int] | None = None,
                 amp: bool = False) -> None:
        if spec is None or not str(spec).strip():
            raise ConfigError("no teacher: give --teacher CKPT_OR_RUN (or distill.teacher in the recipe)")
        self.path = checkpoint_paths(resolve_checkpoint(spec))[0]
        self.model = load_model(self.path, device)
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = next(self.model.parameters()).device
        if size is not None and not isinstance(size, str):
            size = "x".join(str(v) for v in size) if isinstance(size, (list, tuple)) else repr(size)
        self.input_size = parse_size(size, "distill.teacher_size") if size is not None else model_input_size(self.model)
        self.amp = amp

    @property
    def name(self) -> str:
        return str(self.model.config.get("name", type(self.model).__name__))

    def size_for(self, student_size: Sequence[int]) -> tuple[int, int]:
        """The size the teacher runs at for a student batch of ``student_size``."""
        return tuple(self.input_size) if self.input_size is not None else (int(student_size[0]), int(student_size[1]))

    @torch.no_grad()
    def run(self, images: torch.Tensor, outputs: tuple[str, ...]) -> dict[str, Any]:
        """The model's raw ``outputs`` for ``images`` resized to the teacher's input size."""
        self.model.eval()  # nothing may switch it to training (BatchNorm statistics stay frozen)
        size = tuple(images.shape[-2:])
        run_size = self.size_for(size)
        x = images.float()
        if run_size != size:
            x = F.interpolate(x, size=run_size, mode="bilinear", align_corners=False)
        with torch.autocast(self.device.type, dtype=torch.bfloat16 if self.device.type == "cpu" else torch.float16,
                            enabled=self.amp):
            return self.model(x.to(self.device), outputs=outputs)

    def __call__(self, images: torch.Tensor, features: bool = False) -> dict[str, Any]:
        """``depth`` (B, 1, H, W) at the images' size and, with ``features``, the named features."""
        size = tuple(images.shape[-2:])
        out = self.run(images, ("depth", "features") if features else ("depth",))
        depth = out["depth"].float()
        if tuple(depth.shape[-2:]) != size:
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        result: dict[str, Any] = {"depth": depth}
        if features:
            result["features"] = {k: v.float() for k, v in (out.get("features") or {}).items()}
        return result
