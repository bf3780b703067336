"""One function per stage kind of ``slimdepth pipeline``, each over the library call its CLI verb uses.

Every stage function takes the :class:`Context` (the pipeline config, its directory, the models
the earlier stages produced) and returns ``(finished, summary)``: ``finished`` is False when a
training stage stopped before its last step (Ctrl-C, or ``stop_after`` in tests), so that the
driver leaves it "running" for ``--resume``, which continues it through the stage's own resume
machinery (the trainer's ``last`` checkpoint, ``distill.yaml``, ``prune.json``).

A stage directory that holds no resumable state (a stage killed before its first checkpoint) is
the pipeline's own and is cleared before the stage starts again.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimdepth.errors import ConfigError, SlimdepthError
from slimdepth.fileio import atomic_path
from slimdepth.pipeline.budget import predicted_ms
from slimdepth.pipeline.config import CHAIN, effective_budget, pipeline_recipe, stage_settings
from slimdepth.train.config import load_config, merge_defaults, save_config

__all__ = ["Context", "STAGE_KINDS", "STAGE_FUNCTIONS", "torchrun_command"]

Fit = Callable[[Any, str], dict[str, Any]]
#: what each stage is, as pipeline.json records it
STAGE_KINDS = {"teacher": "train", "student": "train", "distill": "distill", "compress": "prune",
               "finetune": "distill", "export": "export", "evaluate": "evaluate", "report": "report"}


def _plain_fit(trainer: Any, label: str) -> dict[str, Any]:
    return trainer.fit()


@dataclass
class Context:
    """What the stages share: the resolved pipeline, its directory and the models made so far."""

    cfg: dict[str, Any]
    out: Path
    log: Callable[[str], None] = print
    fit: Fit = _plain_fit
    stop_after: tuple[str, int] | None = None  # (stage, steps): stop that stage early (a simulated kill)
    models: dict[str, str] = field(default_factory=dict)  # stage -> its model (run directory or checkpoint)
    size: list[int] | None = None  # the deployed input size, once known

    def stop_steps(self, stage: str) -> int | None:
        return self.stop_after[1] if self.stop_after and self.stop_after[0] == stage else None

    def previous_model(self, stage: str) -> str:
        """The latest model of the chain student -> distill -> compress -> finetune before ``stage``."""
        before = CHAIN[:CHAIN.index(stage)] if stage in CHAIN else CHAIN
        for name in reversed(before):
            if name in self.models:
                return self.models[name]
        raise ConfigError(f"{stage}: no earlier stage produced a model")


# ------------------------------------------------------------------------------------ helpers


def _fresh(run: Path, resumable: bool) -> None:
    """Clear a stage directory that cannot be resumed (killed before its first checkpoint)."""
    if not resumable and run.exists():
        shutil.rmtree(run)


def _has_last(run: Path) -> bool:
    return (run / "checkpoints" / "last.state.json").is_file()


def torchrun_command(verb: str, recipe: Path, run: Path, gpus: int, resume: bool) -> list[str]:
    """The command that runs ``slimdepth VERB RECIPE --out RUN`` on ``gpus`` processes, as
    ``slimdepth train`` is run under torchrun."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
            "-m", "slimdepth", verb, str(recipe), "--out", str(run), *(["--resume"] if resume else [])]


def _torchrun(ctx: Context, stage: str, verb: str, recipe: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Run a training stage as a torchrun subprocess (its recipe saved beside the stages)."""
    run = ctx.out / stage
    path = ctx.out / "recipes" / f"{stage}.yaml"
    resumable = _has_last(run) if verb == "train" else (run / "distill.yaml").is_file()
    _fresh(run, resumable)
    if not resumable:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_config(recipe, path)
    command = torchrun_command(verb, path, run, int(ctx.cfg["gpus"]), resumable)
    ctx.log(f"{stage}: {' '.join(command)}")
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise SlimdepthError(f"{stage}: the torchrun {verb} exited with status {code} (see its output above); "
                             "fix the cause and pass --resume to continue")
    return True, _best_summary(run)


def _best_summary(run: Path) -> dict[str, Any]:
    """The run's best validation from its metrics.json (empty when it validated nothing)."""
    metrics = run / "metrics.json"
    if metrics.is_file():
        best = json.loads(metrics.read_text()).get("best")
        if best:
            return {"validation": best}
    return {}


def _recorded_recipe(model: str) -> dict[str, Any] | None:
    """The training recipe a model's checkpoint records."""
    from slimdepth.compress.prune import checkpoint_recipe
    from slimdepth.models.checkpoint import resolve_checkpoint

    return checkpoint_recipe(resolve_checkpoint(model))


# ------------------------------------------------------------------------------ train stages


def train_stage(ctx: Context, stage: str) -> tuple[bool, dict[str, Any]]:
    """teacher / student: train a recipe into ``DIR/STAGE`` (resuming its ``last`` checkpoint)."""
    from slimdepth.train.trainer import Trainer  # lazy: torch only when a stage runs

    recipe = pipeline_recipe(ctx.cfg, stage)
    if recipe.get("distill"):
        if stage != "student":
            raise ConfigError(f"{stage}: {stage_settings(ctx.cfg, stage)['recipe']} is a distillation recipe; "
                              "use it as the student or distill stage")
        recipe["distill"] = None  # a distillation recipe as the student: its ground-truth stage (stage 1)
    if int(ctx.cfg["gpus"]) > 1:
        return _torchrun(ctx, stage, "train", recipe)
    run = ctx.out / stage
    resumable = _has_last(run)
    _fresh(run, resumable)
    if resumable:  # the run continues with the recipe it started with
        recipe = load_config(run / "config.yaml")
    trainer = Trainer(recipe, run, resume=resumable, stop_after=ctx.stop_steps(stage))
    result = ctx.fit(trainer, stage)
    return trainer.step >= trainer.total_steps, {"validation": result} if result else {}


def _distill_recipe(raw: dict[str, Any], teacher: str, init: str | None) -> dict[str, Any]:
    """A distillation recipe with the pipeline's teacher and starting student. A student that is
    already trained replaces a two-stage schedule's stage 1: stage 2 (its steps, lr, warm-up)
    becomes the run."""
    from slimdepth.distill.recipe import check_distill_section, stage_configs
    from slimdepth.train.run import resolve_config

    cfg = resolve_config(None, [], raw)
    cfg["distill"] = dict(cfg.get("distill") or {})
    cfg["distill"]["teacher"] = teacher
    cfg = check_distill_section(cfg)
    if init is not None:
        if cfg["distill"]["schedule"] == "two_stage":
            _, cfg = stage_configs(cfg)
            cfg = copy.deepcopy(cfg)
            cfg["distill"]["schedule"] = "one_stage"
        cfg["distill"]["init"] = init
    return cfg


def _run_distill(ctx: Context, stage: str, raw: dict[str, Any], teacher: str, init: str | None,
                 unlabeled: str | None) -> tuple[bool, dict[str, Any]]:
    from slimdepth.distill.run import RECIPE, prepare_distill_run, resolve_distill_config, run_distillation

    run = ctx.out / stage
    resumable = (run / RECIPE).is_file()
    _fresh(run, resumable)
    if resumable:
        _, cfg = prepare_distill_run(None, run, [], resume=True)
    else:
        cfg = resolve_distill_config(None, [], _distill_recipe(raw, teacher, init), unlabeled=unlabeled)
    if int(ctx.cfg["gpus"]) > 1:
        return _torchrun(ctx, stage, "distill", cfg)
    trainers: list[Any] = []

    def fit(trainer: Any, label: str) -> dict[str, Any]:
        trainers.append(trainer)
        return ctx.fit(trainer, f"{stage}: {label}")

    summary = run_distillation(cfg, run, resume=resumable, fit=fit, stop_after=ctx.stop_steps(stage))
    last = trainers[-1] if trainers else None
    finished = last is not None and last.step >= last.total_steps and "distill" in summary
    return finished, {"validation": summary.get("distill")} if summary.get("distill") else {}


def distill_stage(ctx: Context, stage: str = "distill") -> tuple[bool, dict[str, Any]]:
    """distill: the distill recipe with the teacher stage's model as teacher, starting from the
    student stage's model when there is one; unlabeled data from the recipe (or ``unlabeled:``)."""
    section = stage_settings(ctx.cfg, stage)
    raw = merge_defaults(section["set"], load_config(section["recipe"]))
    init = ctx.models.get("student")
    return _run_distill(ctx, stage, raw, ctx.models["teacher"], init, section["unlabeled"])


def finetune_stage(ctx: Context, stage: str = "finetune") -> tuple[bool, dict[str, Any]]:
    """finetune: knowledge distillation from the teacher that recovers the accuracy pruning cost,
    starting from the compressed model (``distill.init``) for ``steps`` steps."""
    section = stage_settings(ctx.cfg, stage)
    recipe = section["recipe"]
    if recipe is None:  # the distill stage's recipe, else the student's
        source = "distill" if isinstance(ctx.cfg["distill"], dict) and ctx.cfg["distill"].get("recipe") else "student"
        recipe = ctx.cfg[source]["recipe"]
    raw = merge_defaults(section["set"], load_config(recipe))
    raw.setdefault("train", {})
    raw["train"] = {**(raw["train"] or {}), "steps": int(section["steps"])}
    if section["lr"] is not None:
        raw["optim"] = {**(raw.get("optim") or {}), "lr": float(section["lr"])}
    distill = dict(raw.get("distill") or {})
    distill["schedule"] = "one_stage"  # the compressed student is trained already
    distill.pop("stage2", None)
    raw["distill"] = distill
    init = ctx.previous_model(stage)
    return _run_distill(ctx, stage, raw, ctx.models["teacher"], init, None)


# ---------------------------------------------------------------------------- compress stage


def _flat_overrides(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """A nested ``set:`` mapping as ``KEY=VALUE`` overrides (JSON values read back as YAML)."""
    out: list[str] = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += _flat_overrides(value, dotted + ".")
        else:
            out.append(f"{dotted}={json.dumps(value)}")
    return out


def prune_settings(ctx: Context) -> Any:
    """The :class:`PruneSettings` of the compress stage: ``target_macs``, or a latency budget
    (``target_latency``, default the top-level ``budget_ms``) on the pipeline's runtime and size."""
    import dataclasses

    from slimdepth.compress.prune import PruneSettings

    c = stage_settings(ctx.cfg, "compress")
    known = {f.name for f in dataclasses.fields(PruneSettings)}
    given: dict[str, Any] = {"method": c["method"], "steps": int(c["steps"]), **c["settings"]}
    if c["target_macs"] is not None:
        given["target_macs"] = float(c["target_macs"])
    else:
        given.update(target_latency=float(c["target_latency"] or ctx.cfg["budget_ms"]), runtime=ctx.cfg["runtime"],
                     latency_size=ctx.cfg["size"], threads=int(ctx.cfg["threads"]),
                     latency_table=c["latency_table"] or _budget_table_file(ctx), max_tries=int(c["max_tries"]))
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(f"compress: PruneSettings has no {', '.join(unknown)}")
    settings = PruneSettings(**given)
    settings.check()
    return settings


def _budget_table_file(ctx: Context) -> str | None:
    """The table measured at the start of the pipeline (:mod:`slimdepth.pipeline.budget`), if any."""
    from slimdepth.pipeline.budget import LATENCY_TABLE

    path = ctx.out / LATENCY_TABLE
    return str(path) if path.is_file() else None


def compress_stage(ctx: Context, stage: str = "compress") -> tuple[bool, dict[str, Any]]:
    """compress: ``prune_checkpoint`` on the previous model into ``DIR/compress`` (``run_prune``
    continues a stopped one from ``prune.json``)."""
    from slimdepth.compress.prune import Interrupted, prune_checkpoint, run_prune

    c = stage_settings(ctx.cfg, stage)
    run = ctx.out / stage
    stop = ctx.stop_steps(stage)
    resumable = (run / "prune.json").is_file()
    _fresh(run, resumable)
    try:
        if resumable:
            state = run_prune(run, fit=ctx.fit, stop_after=stop, log=ctx.log)
        else:
            source = ctx.previous_model(stage)
            ctx.log(f"{stage}: compressing {source}")
            state = prune_checkpoint(source, prune_settings(ctx), run, data=c["data"], val=c["val"],
                                     overrides=_flat_overrides(c["set"]), fit=ctx.fit, log=ctx.log)
    except Interrupted:
        return False, {}
    r = state["result"]
    summary = {k: r.get(k) for k in ("macs", "ratio", "params", "validation") if k in r}
    if r.get("latency"):
        summary["latency"] = r["latency"]
    return True, summary


# ------------------------------------------------------------------------------ export stage


def deploy_size(ctx: Context, model: str) -> list[int]:
    """The deployed input size: the pipeline's ``size``, else the model's training size."""
    if ctx.cfg["size"]:
        return list(ctx.cfg["size"])
    from slimdepth.loader import load_model
    from slimdepth.models.checkpoint import model_input_size

    size = model_input_size(load_model(model))
    if size is None:
        raise ConfigError(f"{model} records no input size; set size: HxW in the pipeline file")
    return list(size)


def export_stage(ctx: Context, stage: str = "export") -> tuple[bool, dict[str, Any]]:
    """export: the final model as fp32 ONNX (``DIR/export/model.onnx``) and, with ``int8``, int8
    QDQ ONNX (``int8.onnx``) calibrated on ``calib`` (default: the model's training data)."""
    from slimdepth.deploy.export import ExportSettings, export_model

    e = stage_settings(ctx.cfg, stage)
    model = ctx.previous_model(stage)
    size = tuple(ctx.size or deploy_size(ctx, model))
    run = ctx.out / stage
    _fresh(run, False)  # an export is redone whole
    run.mkdir(parents=True)
    say = ctx.log
    say(f"{stage}: {model} -> {run / 'model.onnx'} at {size[0]}x{size[1]}")
    fp32 = export_model(model, run / "model.onnx", ExportSettings("onnx", size, opset=int(e["opset"]),
                                                                   threads=int(ctx.cfg["threads"])), log=say)
    summary: dict[str, Any] = {"model": model, "size": list(size), "onnx": str(run / "model.onnx"),
                               "onnx_mb": fp32["file_bytes"] / 1e6}
    if e["int8"]:
        recipe = _recorded_recipe(model) or {}
        calib = e["calib"] or (recipe.get("data") or {}).get("train")
        if not calib:
            raise ConfigError(f"{stage}: {model} records no training data to calibrate int8 on; set export.calib")
        val = e["val"] or (ctx.cfg["evaluate"] or {}).get("data") or (recipe.get("data") or {}).get("val")
        say(f"{stage}: int8, calibrated on {e['calib_num']} images of {calib}")
        q = export_model(model, run / "int8.onnx", ExportSettings(
            "onnx", size, int8=True, calib=calib, calib_num=int(e["calib_num"]), calib_method=e["calib_method"],
            val=val, val_num=int(e["val_num"]), opset=int(e["opset"]), threads=int(ctx.cfg["threads"])), log=say)
        summary.update(int8=str(run / "int8.onnx"), int8_mb=q["file_bytes"] / 1e6)
        if "int8" in q:
            summary["int8_check"] = {k: q["int8"][k] for k in ("delta1_change_points", "speedup") if k in q["int8"]}
    return True, summary


# ---------------------------------------------------------------------------- evaluate stage


#: evaluation sets up to this many frames are kept in memory across the models
_CACHE_FRAMES = 200


def _row_sources(ctx: Context) -> list[dict[str, Any]]:
    """Every model to score: the torch models of the stages, then the exported files."""
    rows = [{"name": s, "stage": s, "path": ctx.models[s], "runtime": "torch"}
            for s in ("teacher", *CHAIN) if s in ctx.models]
    export = ctx.out / "export"
    for name, file, runtime in (("onnx", "model.onnx", "ort"), ("onnx-int8", "int8.onnx", "ort-int8")):
        if (export / file).is_file():
            rows.append({"name": name, "stage": "export", "path": str(export / file), "runtime": runtime})
    return rows


def _score(path: str, dataset: Any, eval_cfg: Any, e: dict[str, Any]) -> tuple[dict[str, float], list[int] | None]:
    from slimdepth.deploy.exported import load_for_inference
    from slimdepth.evaluate.loop import evaluate_model

    model, input_size = load_for_inference(path, "cpu")
    report = evaluate_model(model, dataset, eval_cfg, input_size, int(e["batch_size"]), limit=e["limit"])
    return dict(report.metrics), list(input_size) if input_size else None


def _cost(path: str, size: tuple[int, int]) -> dict[str, Any]:
    from slimdepth.deploy.cost import count_macs, count_parameters, file_size_mb
    from slimdepth.deploy.exported import is_exported_file
    from slimdepth.loader import load_model
    from slimdepth.models.checkpoint import resolve_checkpoint

    if is_exported_file(path):
        return {"size_mb": file_size_mb(path)}
    model = load_model(path)
    return {"params": count_parameters(model), "macs": count_macs(model, size).total,
            "size_mb": file_size_mb(resolve_checkpoint(path))}


def evaluate_stage(ctx: Context, stage: str = "evaluate") -> tuple[bool, dict[str, Any]]:
    """evaluate: accuracy of every model on the validation data (exported files on their runtime)
    and batch-1 latency of every row at the deployed size, timed interleaved, each runtime in its
    own worker process; ``DIR/evaluate/results.json``."""
    from slimdepth.data.registry import build_dataset
    from slimdepth.deploy.latency import summarize_samples
    from slimdepth.deploy.machine import cpu_model
    from slimdepth.deploy.workers import interleave_workers
    from slimdepth.evaluate.conventions import resolve_eval_config
    from slimdepth.train.data import CachedDataset

    e = stage_settings(ctx.cfg, stage)
    final = ctx.previous_model("export")
    size = tuple(ctx.size or deploy_size(ctx, final))
    recipe = _recorded_recipe(final) or {}
    data = e["data"] or (recipe.get("data") or {}).get("val")
    if not data:
        raise ConfigError(f"{stage}: {final} records no validation data; set evaluate.data")
    ev = recipe.get("eval") or {}
    dataset = build_dataset(data)
    if min(len(dataset), e["limit"] or len(dataset)) <= _CACHE_FRAMES:  # every model reads the same frames:
        dataset = CachedDataset(dataset)  # render or decode a small set once (a full KITTI split would not fit)
    eval_cfg = resolve_eval_config(dataset, ev.get("preset"), ev.get("crop"), ev.get("min_depth"), ev.get("max_depth"),
                                   bool(ev.get("median_scaling")))
    table = _budget_latency_table(ctx)
    rows: list[dict[str, Any]] = []
    for source in _row_sources(ctx):
        ctx.log(f"{stage}: scoring {source['name']} ({source['runtime']}) on {data}")
        metrics, eval_size = _score(source["path"], dataset, eval_cfg, e)
        cost = _cost(source["path"], size)
        rows.append({**source, "params": cost.get("params"), "macs": cost.get("macs"), "size_mb": cost["size_mb"],
                     "latency_ms": None, "latency_p90_ms": None, "predicted_ms": None,
                     "eval_size": eval_size, "d1": metrics["d1"], "abs_rel": metrics["abs_rel"],
                     "rmse": metrics["rmse"]})
    origin = next((r for r in rows if r["path"] == final), None)
    for row in rows:  # an exported file has the parameters and MACs of the model it came from
        if row["runtime"] != "torch" and origin is not None:
            row["params"], row["macs"] = origin["params"], origin["macs"]
    if e["latency"]:  # the budget runtime's rows exist to be timed
        rows += _budget_runtime_rows(ctx, rows, size, table)
    if e["latency"]:
        specs = [{"runtime": r["runtime"], **({"model": r["path"]} if r["runtime"] == "torch" else {"path": r["path"]}),
                  "size": list(size), "threads": int(ctx.cfg["threads"]), "warmup": int(e["warmup"])} for r in rows]
        ctx.log(f"{stage}: timing {len(specs)} models at {size[0]}x{size[1]}, {e['runs']} runs each in "
                f"{e['rounds']} interleaved rounds, {ctx.cfg['threads']} threads")
        for row, samples in zip(rows, interleave_workers(specs, int(e["runs"]), int(e["rounds"]))):
            s = summarize_samples(samples)
            row["latency_ms"], row["latency_p90_ms"] = s["median_ms"], s["p90_ms"]
    results = {"runtime_threads": int(ctx.cfg["threads"]), "size": list(size), "cpu": cpu_model(),
               "budget_ms": effective_budget(ctx.cfg), "budget_runtime": ctx.cfg["runtime"], "data": data, "rows": rows}
    out = ctx.out / stage
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2, default=float) + "\n")
    for row in rows:
        lat = f"{row['latency_ms']:.2f} ms" if row["latency_ms"] is not None else "-"
        ctx.log(f"  {row['name']:<10} {row['runtime']:<9} d1 {row['d1']:.3f}  AbsRel {row['abs_rel']:.3f}  "
                f"RMSE {row['rmse']:.3f}  {lat}")
    return True, {"results": str(out / "results.json"), "rows": len(rows), "size": list(size)}


def _budget_latency_table(ctx: Context) -> Any:
    """The latency table the compress stage used (``None`` without a latency budget)."""
    from slimdepth.compress.latency_table import LatencyTable

    run = ctx.models.get("compress")
    state = Path(run) / "prune.json" if run else None
    if state is None or not state.is_file():
        return None
    settings = json.loads(state.read_text()).get("settings") or {}
    path = Path(settings.get("latency_table") or Path(run) / "latency_table.json")
    return LatencyTable.load(path) if settings.get("target_latency") is not None and path.is_file() else None


def _budget_runtime_rows(ctx: Context, rows: list[dict[str, Any]], size: tuple[int, ...], table: Any
                         ) -> list[dict[str, Any]]:
    """Every PyTorch model of the chain (and the teacher) exported for the budget's runtime, so
    that the accuracy-against-latency plot has a point per stage on the runtime the budget is set
    on; accuracy is the PyTorch row's (an fp32 export matches it within 1e-4 m, checked on
    export), the table's prediction is added where the table knows the architecture."""
    from slimdepth.deploy.artefacts import runtime_artefacts
    from slimdepth.deploy.cost import file_size_mb

    runtime = ctx.cfg["runtime"]
    extra = []
    for row in [r for r in rows if r["runtime"] == "torch"]:
        if runtime == "torch":
            row["predicted_ms"] = predicted_ms(table, row["path"])
            continue
        spec = runtime_artefacts(row["path"], [runtime], tuple(size), ctx.out / "evaluate" / "exports" / row["name"],
                                 log=ctx.log, strict=True)[runtime]
        extra.append({**row, "runtime": runtime, "path": spec["path"], "size_mb": file_size_mb(spec["path"]),
                      "accuracy_of": "torch", "predicted_ms": predicted_ms(table, row["path"])})
    return extra


# ------------------------------------------------------------------------------ report stage


def report_stage(ctx: Context, stage: str = "report") -> tuple[bool, dict[str, Any]]:
    """report: ``slimdepth.report.write_report([DIR], DIR/report.html)``."""
    from slimdepth.report import write_report

    r = stage_settings(ctx.cfg, stage)
    real = Path(r["real"]) if r.get("real") else None
    # overwrite: a report stage that stopped part-way may have left its page; it is the pipeline's own file
    path = write_report([ctx.out], ctx.out / "report.html", real=real, real_num=int(r["real_num"]), log=ctx.log,
                        overwrite=True)
    return True, {"report": str(path)}


STAGE_FUNCTIONS: dict[str, Callable[..., tuple[bool, dict[str, Any]]]] = {
    "teacher": train_stage, "student": train_stage, "distill": distill_stage, "compress": compress_stage,
    "finetune": finetune_stage, "export": export_stage, "evaluate": evaluate_stage, "report": report_stage,
}
