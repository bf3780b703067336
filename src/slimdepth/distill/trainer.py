"""The distillation trainer: the training loop of ``train`` with a frozen teacher, mixed
labeled/unlabeled batches and the distillation objective.

It writes the same run directory as :class:`~slimdepth.train.trainer.Trainer` (checkpoints,
logs, validation, samples), so ``evaluate``, ``compare``, ``prune`` and ``export`` take it, and
it resumes bit for bit: the labeled order comes from the resumable sampler, the unlabeled draws
from the global step (:mod:`slimdepth.distill.data`), and the teacher is deterministic.
Under DDP every process holds its own teacher (no gradient, not wrapped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from slimdepth.data.registry import build_dataset
from slimdepth.distill.cache import TeacherCache
from slimdepth.distill.criterion import DistillCriterion
from slimdepth.distill.data import MixedBatchSampler, MixedView, UnlabeledStream, collate_mixed, split_batch
from slimdepth.distill.teacher import Teacher
from slimdepth.distill.terms import build_kd_terms, feature_shapes, parse_kd_terms
from slimdepth.errors import ConfigError, DataError
from slimdepth.losses import build_criterion, valid_mask
from slimdepth.train.sampler import sample_seed
from slimdepth.train.trainer import Progress, Trainer, _to_device

__all__ = ["DistillTrainer"]


class DistillTrainer(Trainer):
    """Trains the student recipe ``config`` (with its ``distill`` section) against ``teacher``
    (a :class:`Teacher`, or a checkpoint / run directory; default ``distill.teacher``)."""

    def __init__(self, config: dict[str, Any], run: str | Path, teacher: Teacher | str | Path | None = None,
                 resume: bool = False, progress: Progress | None = None, stop_after: int | None = None,
                 model: torch.nn.Module | None = None) -> None:
        self.dcfg = config["distill"]
        self._teacher_arg = teacher if teacher is not None else self.dcfg.get("teacher")
        self.specs = parse_kd_terms(self.dcfg["terms"])
        super().__init__(config, run, resume=resume, progress=progress, stop_after=stop_after, model=model)

    # ------------------------------------------------------------------ set-up
    def _build_data(self) -> None:
        super()._build_data()
        arg = self._teacher_arg
        self.teacher = arg if isinstance(arg, Teacher) else Teacher(arg, self.device, self.dcfg.get("teacher_size"),
                                                                    amp=self.amp)
        if self.channels_last:  # it reads the student's channels-last batches: the same layout, no reorders
            self.teacher.model = self.teacher.model.to(memory_format=torch.channels_last)
        spec = self.dcfg.get("unlabeled")
        self.unlabeled_set = build_dataset(spec) if spec else None
        if self.unlabeled_set is not None and len(self.unlabeled_set) == 0:
            raise DataError(f"distill.unlabeled: {spec} has no images")
        self.unlabeled_per_batch = self.batch_size - self.labeled_per_batch
        self.mixed = MixedView(self.train_set, self.unlabeled_set, self.seed)
        self.cache: TeacherCache | None = None

    def _training_samples_per_batch(self) -> int:
        """The labeled share of every batch: the labeled images define the epoch."""
        return split_batch(self.batch_size, float(self.dcfg["unlabeled_ratio"]), bool(self.dcfg.get("unlabeled")))[0]

    def _make_criterion(self) -> torch.nn.Module:
        gt = build_criterion(self.cfg["loss"])
        terms = build_kd_terms(self.specs)
        self.kd_features = any(t.needs_features for t in terms)
        if self.kd_features:
            student = feature_shapes(self.model, self.input_size, self.device)
            teacher = feature_shapes(self.teacher.model, self.teacher.size_for(self.input_size), self.teacher.device)
            for term in terms:
                term.setup(student, teacher)
            self.outputs = (*self.outputs, "features")
        if self.dcfg.get("cache_teacher"):
            self.cache = self._make_cache(terms)
        return DistillCriterion(gt, self.specs, terms, learnable=bool(self.cfg["loss"]["learnable_weights"]))

    def _make_cache(self, terms: list) -> TeacherCache:
        if self.cfg["data"]["augment"]:
            raise ConfigError("distill.cache_teacher keeps the teacher's outputs for fixed images: it needs "
                              "data.augment: [] (augmented batches compute the teacher on the fly)")
        levels = sorted({lvl for t in terms for lvl in t.teacher_levels})
        sizes = {"l": len(self.train_set), "u": len(self.unlabeled_set) if self.unlabeled_set is not None else 0}
        if not self.dist.main:  # rank 0 lays the files out; the others open them
            self._barrier()
        sources = {"train": self.cfg["data"]["train"], "unlabeled": self.dcfg.get("unlabeled")}
        cache = TeacherCache(self.run / "teacher_cache", self.teacher, self.input_size, levels, sizes, sources)
        if self.dist.main:
            self._barrier()
        return cache

    def _probe_batch(self) -> dict[str, Any]:
        keys: list[tuple] = [("l", 0)] + ([("u", 0, 0)] if self.unlabeled_per_batch else [])
        return collate_mixed([self.mixed[k] for k in keys])

    # ------------------------------------------------------------------ loop
    def _loader(self) -> DataLoader:
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_start(self.position)
        self.train_set.set_epoch(self.epoch)
        stream = (UnlabeledStream(len(self.unlabeled_set), self.unlabeled_per_batch, self.seed, self.dist.rank,
                                  self.dist.world) if self.unlabeled_per_batch else None)
        batches = MixedBatchSampler(self.sampler, self.labeled_per_batch, stream, self.step)
        return DataLoader(self.mixed, batch_sampler=batches, num_workers=int(self.cfg["data"]["workers"]),
                          collate_fn=collate_mixed, pin_memory=self.device.type == "cuda", persistent_workers=False)

    def _teacher_outputs(self, batch: dict[str, Any], images: torch.Tensor) -> dict[str, Any]:
        if self.cache is None:
            return self.teacher(images, features=self.kd_features)
        keys = [m["mix"] for part in ("labeled", "unlabeled") if batch[part] is not None for m in batch[part]["meta"]]
        return self.cache.get(keys, images)

    def _forward_loss(self, batch: dict[str, Any], net: torch.nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        labeled = _to_device(batch["labeled"], self.device, self.channels_last)
        parts = [labeled["image"]]
        if batch.get("unlabeled") is not None:
            parts.append(_to_device(batch["unlabeled"], self.device, self.channels_last)["image"])
        images = torch.cat(parts) if len(parts) > 1 else parts[0]
        outputs = self._run_net(net, images, self.outputs)
        teacher = self._teacher_outputs(batch, images)
        mask = torch.ones(images.shape[0], 1, *images.shape[-2:], dtype=torch.bool, device=images.device)
        mask[: labeled["depth"].shape[0]] = valid_mask(labeled["depth"], labeled.get("mask"))
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.step, self.dist.rank))
        return self.criterion(outputs, teacher, labeled, mask, generator=generator)

    def _save(self, tag: str, metrics: dict[str, Any] | None = None) -> None:
        if self.cache is not None and tag == "last":
            self.cache.flush()
        super()._save(tag, metrics)
