"""The training recipe: defaults and the schema every YAML config is checked against."""

from __future__ import annotations

from typing import Any

from slimdepth.evaluate.metrics import METRIC_KEYS
from slimdepth.options import MAX_THREADS
from slimdepth.train.config import Field

DEFAULTS: dict[str, Any] = {
    "model": {"name": "litedepth"},
    "data": {
        "train": "synthetic,num=2000",
        "val": "synthetic,num=100,split=val",
        "size": None,  # training input size HxW; None = the dataset's own size
        "augment": [],
        "batch_size": 8,
        "val_batch_size": 8,
        "workers": 2,
        "cache": False,
        "val_limit": None,
    },
    "loss": {"terms": [{"type": "silog"}], "learnable_weights": False, "scale_weights": None, "seg_weights": None,
             "seg": None},
    "optim": {"name": "adamw", "lr": 1.0e-3, "weight_decay": 1.0e-4, "momentum": 0.9, "nesterov": False,
              "grad_clip": 1.0},
    "schedule": {"name": "cosine", "warmup_steps": 100, "warmup_ratio": None, "warmup_start": 0.01, "power": 0.9,
                 "min_lr_ratio": 0.01},
    "train": {
        "epochs": 10,
        "steps": None,  # total optimisation steps; overrides epochs when set
        "seed": 0,
        "device": "auto",
        "amp": "auto",  # mixed precision on GPU
        "channels_last": "auto",  # channels-last memory format on GPU and CPU
        "log_every": 20,
        "checkpoint_every": 200,
        "val_every": 1,
        "samples": 4,
        "monitor": "abs_rel",
        "threads": None,
    },
    "eval": {"preset": None, "min_depth": None, "max_depth": None, "crop": None, "median_scaling": False,
             "flip": False},
    "distill": None,  # a student recipe's distillation settings (`slimdepth distill`; see slimdepth.distill.recipe)
}

_ANY = object
POSITIVE_INT = Field(int, min=1)
SCHEMA: dict[str, Any] = {
    "model": {"name": str, "*": _ANY},
    "data": {
        "train": (str, dict), "val": (str, dict, type(None)), "size": (str, list, type(None)), "augment": (list, dict),
        "batch_size": POSITIVE_INT, "val_batch_size": POSITIVE_INT, "workers": Field(int, min=0), "cache": bool,
        "val_limit": Field(int, min=1, nullable=True),
    },
    "loss": {"terms": list, "learnable_weights": bool, "scale_weights": (list, type(None)),
             "seg_weights": (list, type(None)), "seg": (dict, type(None)), "road_weight": Field(float, min=0.0)},
    "optim": {"name": ("adamw", "sgd"), "lr": Field(float, min=0.0), "weight_decay": Field(float, min=0.0),
              "momentum": Field(float, min=0.0, max=1.0), "nesterov": bool,
              "grad_clip": Field(float, min=0.0, nullable=True)},
    "schedule": {"name": ("cosine", "poly", "constant"), "warmup_steps": Field(int, min=0, nullable=True),
                 "warmup_ratio": Field(float, min=0.0, max=1.0, nullable=True), "warmup_start": Field(float, min=0.0, max=1.0),
                 "power": Field(float, min=0.0), "min_lr_ratio": Field(float, min=0.0, max=1.0)},
    "train": {"epochs": POSITIVE_INT, "steps": Field(int, min=1, nullable=True), "seed": Field(int, min=0),
              "device": str, "amp": (str, bool), "channels_last": (str, bool), "log_every": POSITIVE_INT,
              "checkpoint_every": POSITIVE_INT, "val_every": POSITIVE_INT, "samples": Field(int, min=0),
              "monitor": Field(str, choices=METRIC_KEYS),
              "threads": Field(int, min=1, max=MAX_THREADS, nullable=True)},
    "eval": {"preset": (str, type(None)), "min_depth": Field(float, min=0.0, nullable=True),
             "max_depth": Field(float, min=0.0, nullable=True), "crop": (str, type(None)), "median_scaling": bool,
             "flip": bool},
    "distill": (dict, type(None)),
}
