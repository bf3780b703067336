"""Distillation study: a LiteDepth student with few labels, many unlabeled images and a teacher.

A label-scarce setting like the real one, on the built-in synthetic scenes: ``--labeled``
frames (200) whose only ground truth is the simulated sparse 64-beam LiDAR, ``--unlabeled``
frames (4,000) with no labels at all, and a held-out test set scored against the exact dense
depth. The teacher is a ResNet-18 U-Net trained on the labeled frames at twice the student's
budget. Every student row gets the same number of optimisation steps (``--steps``; the two
stages of the two-stage row add up to it):

1. student alone (sparse LiDAR);
2. + response KD on the labeled frames;
3. + unlabeled frames (response KD on them, half of every batch);
4. + affinity KD (LiteDepth's structure-aware term, weight 10, on labeled and unlabeled);
5. two-stage (LiteDepth): half the steps on LiDAR alone, half fine-tuning with 3.'s terms;
6. student trained on stereo-compensated pseudo-labels (``slimdepth pseudo-label --stereo``:
   semi-global matching on the right view, fitted to and merged with the LiDAR) instead of
   the sparse LiDAR;
7. the teacher itself;
8. a teacher trained on the stereo pseudo-labels instead (dense where the LiDAR is not), and
9. the student distilled from that teacher as in 4. (LiDAR ground truth, unlabeled frames,
   response + affinity).

Prints one table (parameters, δ1, AbsRel, RMSE on the test frames) and each row's AbsRel
change relative to the student alone. Everything is resumable: datasets, pseudo-labels and
finished runs are reused, a killed run continues. ``--device cuda`` uses a GPU when lent.

    python benchmarks/distill_study.py --out runs/distill_study [--steps 1500] [--size 96x320]
        [--labeled 200] [--unlabeled 4000] [--test 200] [--device auto] [--workers 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from slimdepth.errors import OneLineArgumentParser, run_script

ROWS = ("student", "response", "unlabeled", "affinity", "two_stage", "stereo_labels", "teacher", "stereo_teacher",
        "stereo_teacher_kd")
LABELS = {
    "student": "student alone (sparse LiDAR)",
    "response": "+ response KD (labeled)",
    "unlabeled": "+ unlabeled frames",
    "affinity": "+ affinity KD",
    "two_stage": "two-stage (LiDAR, then + KD)",
    "stereo_labels": "student on stereo pseudo-labels",
    "teacher": "teacher (ResNet-18 U-Net, LiDAR)",
    "stereo_teacher": "teacher on stereo pseudo-labels",
    "stereo_teacher_kd": "student + unlabeled + affinity KD from it",
}


def parse_args() -> argparse.Namespace:
    p = OneLineArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/distill_study"))
    p.add_argument("--size", default="96x320")
    p.add_argument("--labeled", type=int, default=200)
    p.add_argument("--unlabeled", type=int, default=4000)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--steps", type=int, default=1500, help="optimisation steps of every student row")
    p.add_argument("--teacher-steps", type=int, default=None, help="default: twice --steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers and rendering processes")
    p.add_argument("--rows", nargs="*", default=list(ROWS), choices=ROWS)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    from slimdepth.errors import ConfigError
    from slimdepth.options import check_number, check_threads, parse_size, resolve_device

    # bad values end the script now (run_script: one line), not after hours of training
    parse_size(args.size, "--size")
    for option in ("labeled", "unlabeled", "test", "batch"):
        check_number(getattr(args, option), f"--{option}", integer=True, low=1)
    check_number(args.steps, "--steps", integer=True, low=2 if "two_stage" in args.rows else 1)  # two_stage halves it
    try:
        resolve_device(args.device)
    except ConfigError as err:
        raise ConfigError(f"--device: {err}") from None
    if args.teacher_steps is not None:
        check_number(args.teacher_steps, "--teacher-steps", integer=True, low=1)
    check_number(args.workers, "--workers", integer=True, low=0)
    if args.threads is not None:
        check_threads(args.threads)
    rows, stereo_teacher = list(args.rows), stereo_teacher_run(args.out)
    if "stereo_teacher_kd" in rows and not (finished(stereo_teacher) or (
            "stereo_teacher" in rows and rows.index("stereo_teacher") < rows.index("stereo_teacher_kd"))):
        raise ConfigError("--rows: stereo_teacher_kd distills from the stereo_teacher row's model; list stereo_teacher "
                          f"before it (or keep its finished run {stereo_teacher})")
    return args


def stereo_teacher_run(out: Path) -> Path:
    """The stereo_teacher row's run folder under ``--out`` (``main`` trains each row in runs/<row>)."""
    return out / "runs" / "stereo_teacher"


def student_recipe(args: argparse.Namespace, train_spec: str) -> dict[str, Any]:
    steps = args.steps
    return {
        "model": {"name": "litedepth", "internal_size": "none", "max_depth": 80.0},
        # validation (only at the end) scores against the LiDAR too: no training run sees dense depth
        "data": {"train": train_spec, "val": f"folder:{args.out / 'data' / 'val'},depth_dir=lidar,lidar_dir=none",
                 "size": args.size, "batch_size": args.batch, "val_batch_size": 16, "workers": args.workers,
                 "augment": [{"op": "hflip", "p": 0.5},
                             {"op": "color_jitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.2}]},
        "loss": {"terms": [{"type": "silog"}]},
        "optim": {"name": "adamw", "lr": 2.0e-3, "weight_decay": 1.0e-4, "grad_clip": 1.0},
        "schedule": {"name": "cosine", "warmup_steps": min(100, steps // 10)},
        "train": {"steps": steps, "seed": 0, "device": args.device, "log_every": 50, "checkpoint_every": 250,
                  "val_every": 10**6, "samples": 2, "monitor": "abs_rel", "threads": args.threads},
    }


def lidar_spec(args: argparse.Namespace) -> str:
    """The labeled frames with the simulated LiDAR as their only ground truth."""
    return f"folder:{args.out / 'data' / 'labeled'},depth_dir=lidar,lidar_dir=none,right_dir=none,seg_dir=none"


def make_data(args: argparse.Namespace) -> None:
    from slimdepth.data.synthetic import write_synthetic

    data = args.out / "data"
    jobs = [("labeled", args.labeled, 0, "train", ["depth", "lidar", "right"]),
            ("unlabeled", args.unlabeled, 1, "train", ["depth"]),
            ("val", 50, 0, "val", ["depth", "lidar"]),
            ("test", args.test, 0, "test", ["depth"])]
    for name, num, seed, split, components in jobs:
        t0 = time.perf_counter()
        summary = write_synthetic(data / name, num, args.size, seed, split, components, max(1, args.workers))
        print(f"data/{name}: {num} frames ({summary['written']} written) in {time.perf_counter() - t0:.0f} s", flush=True)


def make_pseudo_labels(args: argparse.Namespace) -> Path:
    out = args.out / "data" / "stereo_labels"
    if not (out / "report.json").is_file():
        cmd = [sys.executable, "-m", "slimdepth", "pseudo-label", "--data", f"folder:{args.out / 'data' / 'labeled'}",
               "--out", str(out), "--stereo", "--report"]
        print("$ " + " ".join(cmd[2:]), flush=True)
        if subprocess.call(cmd) != 0:
            raise SystemExit("pseudo-labelling failed")
    return out


def finished(run: Path) -> bool:
    """Whether ``run`` trained to its end (a checkpoint and a validation entry; an unreadable log: no)."""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return (run / "checkpoints" / "last.state.json").is_file() and isinstance(metrics, dict) and bool(
        metrics.get("validation"))


def train(cfg: dict[str, Any], run: Path) -> None:
    from slimdepth.train.run import fit_with_progress, resolve_config
    from slimdepth.train.trainer import Trainer

    if finished(run):
        return
    resume = (run / "checkpoints" / "last.state.json").is_file()
    fit_with_progress(Trainer(resolve_config(None, [], cfg), run, resume=resume), run.name)


def distill(cfg: dict[str, Any], run: Path, teacher: Path) -> None:
    from slimdepth.distill.run import resolve_distill_config, run_distillation
    from slimdepth.train.run import fit_with_progress

    resume = (run / "distill.yaml").is_file()  # a started run continues (a finished one returns at once)
    cfg = resolve_distill_config(None, [], cfg, teacher=teacher) if not resume else load_saved(run)
    run_distillation(cfg, run, resume=resume, fit=fit_with_progress)


def load_saved(run: Path) -> dict[str, Any]:
    from slimdepth.distill.run import prepare_distill_run

    return prepare_distill_run(None, run, [], resume=True)[1]


def score(run: Path, args: argparse.Namespace, test: Any) -> dict[str, Any]:
    import torch

    from slimdepth.evaluate.conventions import resolve_eval_config
    from slimdepth.evaluate.loop import evaluate_model
    from slimdepth.loader import load_model
    from slimdepth.options import parse_size

    device = "cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    model = load_model(run / "checkpoints" / "last.safetensors", device)
    report = evaluate_model(model, test, resolve_eval_config(test, None, None, None, 80.0, False),
                            parse_size(args.size, "--size"), batch_size=16, device=device)
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, **{k: report.metrics[k] for k in ("d1", "abs_rel", "rmse")}}


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    make_data(args)
    from slimdepth.data.registry import build_dataset

    test = build_dataset(f"folder:{args.out / 'data' / 'test'}")
    runs = args.out / "runs"
    base = student_recipe(args, lidar_spec(args))

    teacher_cfg = copy.deepcopy(base)
    teacher_cfg["model"] = {"name": "resnet18-unet", "max_depth": 80.0}
    teacher_cfg["optim"]["lr"] = 1.0e-3
    teacher_cfg["train"]["steps"] = args.teacher_steps or 2 * args.steps
    teacher = runs / "teacher"
    train(teacher_cfg, teacher)
    teacher_ckpt = teacher / "checkpoints" / "last.safetensors"

    unlabeled = f"unlabeled:{args.out / 'data' / 'unlabeled' / 'rgb'}"
    response = [{"type": "response", "weight": 1.0}]
    affinity = response + [{"type": "affinity", "weight": 10.0}]
    variants = {
        "response": {"terms": response},
        "unlabeled": {"terms": response, "unlabeled": unlabeled, "unlabeled_ratio": 0.5},
        "affinity": {"terms": affinity, "unlabeled": unlabeled, "unlabeled_ratio": 0.5},
        "two_stage": {"terms": affinity, "unlabeled": unlabeled, "unlabeled_ratio": 0.5, "schedule": "two_stage",
                      "stage2": {"steps": args.steps - args.steps // 2, "lr": 5.0e-4,
                                 "warmup_steps": min(50, args.steps // 20)}},
    }
    results: dict[str, dict[str, Any]] = {}
    for row in args.rows:
        t = time.perf_counter()
        run = runs / row
        if row == "teacher":
            run = teacher
        elif row == "stereo_teacher":
            labels = make_pseudo_labels(args)
            cfg = copy.deepcopy(teacher_cfg)
            cfg["data"]["train"] = f"folder:{labels},lidar_dir=none,right_dir=none,seg_dir=none"
            train(cfg, run)
        elif row == "stereo_teacher_kd":
            cfg = copy.deepcopy(base)
            cfg["distill"] = variants["affinity"]
            distill(cfg, run, stereo_teacher_run(args.out) / "checkpoints" / "last.safetensors")  # checked in parse_args
        elif row == "student":
            train(base, run)
        elif row == "stereo_labels":
            labels = make_pseudo_labels(args)
            train(student_recipe(args, f"folder:{labels},lidar_dir=none,right_dir=none,seg_dir=none"), run)
        else:
            cfg = copy.deepcopy(base)
            cfg["distill"] = variants[row]
            if row == "two_stage":
                cfg["train"]["steps"] = args.steps // 2
            distill(cfg, run, teacher_ckpt)
        results[row] = score(run, args, test)
        print(f"{row}: {results[row]} ({time.perf_counter() - t:.0f} s)", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, args, time.perf_counter() - t0)


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace, seconds: float) -> None:
    ref = results.get("student")
    print(f"\n{args.labeled} labeled frames (sparse LiDAR), {args.unlabeled} unlabeled, {args.test} test frames scored "
          f"against the exact dense depth (0-80 m) at {args.size}; {args.steps} student steps per row, batch "
          f"{args.batch}; {seconds / 60:.1f} min\n")
    print("| row | params (M) | δ1 | AbsRel | RMSE (m) | AbsRel vs student alone |")
    print("|---|---:|---:|---:|---:|---:|")
    for row, r in results.items():
        rel = f"{100 * (r['abs_rel'] / ref['abs_rel'] - 1):+.1f}%" if ref and row != "student" else "-"
        print(f"| {LABELS[row]} | {r['params'] / 1e6:.2f} | {r['d1']:.3f} | {r['abs_rel']:.4f} | {r['rmse']:.3f} | {rel} |")
    stereo = args.out / "data" / "stereo_labels" / "report.json"
    if stereo.is_file():
        print(f"\npseudo-label report: {stereo}")
        print(stereo.read_text())


if __name__ == "__main__":
    sys.exit(run_script(main))
