"""``slimdepth prune`` and ``slimdepth compare``: compress a trained model, compare models fairly."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console
from slimdepth.errors import ConfigError
from slimdepth.progress import progress_bar


def compare(
    models: list[Path] = typer.Argument(..., help="Run directories or checkpoints to compare."),
    data: str = typer.Option(..., "--data", help="Dataset spec to measure accuracy on."),
    size: str = typer.Option("", "--size", help="Input size HxW for every model (default: the first one's training size)."),
    runs: int = typer.Option(30, "--runs", help="Timed latency runs per model (after the warm-up)."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed warm-up runs."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the latency runs."),
    limit: int = typer.Option(None, "--limit", help="Evaluate only the first N samples."),
    json_out: Path = typer.Option(None, "--json", help="Also write the rows as JSON."),
    csv_out: Path = typer.Option(None, "--csv", help="Also write the rows as CSV."),
    plot_out: Path = typer.Option(None, "--plot", help="Draw accuracy against latency and against MACs (PNG)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """One table, one row per model: parameters, MACs, size, latency (median, p90), d1, AbsRel, RMSE."""
    import slimdepth
    from slimdepth.commands.model_tools import _input_size
    from slimdepth.compress.compare import add_latency, compare_row, format_table, plot, to_csv, to_json
    from slimdepth.data.registry import build_dataset
    from slimdepth.models.checkpoint import checkpoint_paths, resolve_checkpoint

    for path, suffix in ((json_out, ".json"), (csv_out, ".csv"), (plot_out, ".png")):
        if path is not None:
            check_output_file(path, overwrite, (suffix,))
    if runs < 1 or warmup < 0 or (limit is not None and limit < 1):
        raise ConfigError("--runs must be >= 1, --warmup >= 0 and --limit >= 1")
    checkpoints = [resolve_checkpoint(p) for p in models]  # every path is checked before any work
    dataset = build_dataset(data)
    rows, loaded = [], []
    hw = None
    for given, ckpt in zip(models, checkpoints):
        model = slimdepth.load(ckpt)
        hw = hw or _input_size(model, size)
        if hw is None:
            raise ConfigError(f"{given}: the checkpoint records no input size; pass --size HxW")
        with progress_bar(f"{given.name}", "images") as update:
            rows.append(compare_row(str(given), model, dataset, hw, file=checkpoint_paths(ckpt)[0], runs=0,
                                    limit=limit, progress=update))
        loaded.append(model)
    console.print(f"timing {len(loaded)} models at batch 1, interleaved ({runs} runs each) ...")
    add_latency(rows, loaded, hw, runs=runs, warmup=warmup, threads=threads)
    console.print(f"input {hw[0]}x{hw[1]}, batch-1 latency over {runs} runs (models interleaved), "
                  f"accuracy on {rows[0]['images']} images of {data}")
    console.print(format_table(rows))
    for path, text in ((json_out, to_json(rows) if json_out else ""), (csv_out, to_csv(rows) if csv_out else "")):
        if path is not None:
            path.write_text(text)
            console.print(f"wrote {path}")
    if plot_out is not None:
        plot(rows, plot_out)
        console.print(f"wrote {plot_out}")


def prune(
    checkpoint: Path = typer.Argument(None, help="Trained checkpoint or run directory to compress (not with --resume)."),
    method: str = typer.Option(None, "--method", help="masks (method 1), gating (method 2), magnitude or uniform."),
    target_macs: float = typer.Option(None, "--target-macs", help="Fraction of the MACs to keep, e.g. 0.5."),
    out: Path = typer.Option(..., "--out", help="Run directory of the compressed model."),
    data: str = typer.Option(None, "--data", help="Training data spec (default: the recipe the checkpoint was trained with)."),
    val: str = typer.Option(None, "--val", help="Validation data spec (default: the recipe's)."),
    steps: int = typer.Option(None, "--steps", help="Optimisation steps in total, the same for every method (default 500)."),
    config: Path = typer.Option(None, "--config", help="Training recipe to use instead of the checkpoint's."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe value: KEY=VALUE (e.g. optim.lr=5e-4); repeatable."),
    warmup_frac: float = typer.Option(None, "--warmup-frac", help="masks: share of the steps with fixed masks (default 0.1)."),
    joint_frac: float = typer.Option(None, "--joint-frac", help="masks: share of the steps learning masks and weights (default 0.4)."),
    mask_init: str = typer.Option(None, "--mask-init", help="masks: initial logits spread by L1 importance (magnitude) or all equal (constant); default magnitude."),
    ramp_frac: float = typer.Option(None, "--ramp-frac", help="masks: share of the joint steps over which the budget falls from 1 to the target (default 0.5)."),
    mask_lr: float = typer.Option(None, "--mask-lr", help="masks: learning rate of the mask logits (default 0.05)."),
    compression_weight: float = typer.Option(None, "--compression-weight", help="masks: weight of the compression loss; 0 = off (masking alone: no budget fit); default 2.0."),
    cost: str = typer.Option(None, "--cost", help="masks: what the compression loss budgets, macs (default) or params."),
    estimate: str = typer.Option(None, "--estimate", help="masks: price the binary masks (straight-through) (default) or the expected cost."),
    gate_layers: str = typer.Option(None, "--gate-layers", help="gating: comma-separated layers ('bottlenecks' and/or conv names); default bottlenecks."),
    l1_weight: float = typer.Option(None, "--l1-weight", help="gating: weight of the L1 penalty on saliencies (default 0.01)."),
    density: float = typer.Option(None, "--density", help="gating: fraction of channels kept (default: chosen to meet --target-macs)."),
    densities: str = typer.Option(None, "--densities", help="gating: per-layer densities overriding --density, e.g. encoder.layer4=0.3,decoder=0.6 (a conv name or a dotted prefix)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the prune run in --out where it stopped."),
) -> None:
    """Compress a trained model to a MACs budget: learn or choose what to remove, remove it, fine-tune."""
    from slimdepth.compress.pipeline import PruneSettings, read_prune_state, run_prune, start_prune
    from slimdepth.train.run import fit_with_progress

    given = {"method": method, "target_macs": target_macs, "steps": steps, "warmup_frac": warmup_frac,
             "joint_frac": joint_frac, "mask_init": mask_init, "ramp_frac": ramp_frac, "mask_lr": mask_lr, "compression_weight": compression_weight, "cost": cost,
             "estimate": estimate,
             "gate_layers": [s.strip() for s in gate_layers.split(",") if s.strip()] if gate_layers is not None else None,
             "l1_weight": l1_weight, "density": density,
             "densities": _parse_densities(densities) if densities is not None else None}
    given = {k: v for k, v in given.items() if v is not None}
    if resume:
        extra = [name for name, value in (("CHECKPOINT", checkpoint), ("--data", data), ("--val", val),
                                           ("--config", config), ("--set", set_ or None)) if value is not None]
        extra += ["--" + k.replace("_", "-") for k in given]
        if extra:
            raise ConfigError(f"--resume continues with the run's saved settings; leave out {', '.join(extra)}")
        read_prune_state(out)
    else:
        if checkpoint is None:
            raise ConfigError("give the checkpoint to compress, or --resume --out RUN_DIR")
        if "method" not in given or "target_macs" not in given:
            raise ConfigError("--method and --target-macs are required")
        settings = PruneSettings(**given)
        settings.check()
        ckpt, recipe = _prune_inputs(checkpoint, data, val, config, set_)
        start_prune(ckpt, settings, out, recipe)
    console.print(f"prune run: {out}")
    try:
        state = run_prune(out, fit=fit_with_progress, log=console.print)
    except BaseException:
        # a run that fails before its first checkpoint leaves nothing worth keeping: remove the
        # directory this command created, so that the same command can simply be repeated
        if not resume and not any(out.rglob("last.state.json")) and not (out / "pruned.safetensors").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    r = state["result"]
    console.print(f"{state['settings']['method']}: {r['macs'] / 1e9:.3f} GMACs = {r['ratio']:.3f} of "
                  f"{state['original_macs'] / 1e9:.3f} at {state['input_size'][0]}x{state['input_size'][1]}, "
                  f"{r['params'] / 1e6:.3f} M parameters")
    v = r.get("validation")
    if v:
        m = v["metrics"]
        console.print(f"best validation (step {v['step']}): d1 {m['d1']:.3f}  AbsRel {m['abs_rel']:.3f}  RMSE {m['rmse']:.3f}")
    console.print(f"compressed model: {out / 'checkpoints' / 'best.safetensors'}")


def _parse_densities(text: str) -> dict[str, float]:
    """``NAME=D,NAME=D`` -> {name: density}."""
    out: dict[str, float] = {}
    for item in (s.strip() for s in text.split(",")):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--densities: {item!r} must look like LAYER=DENSITY (e.g. encoder.layer4=0.3)")
    return out


def _prune_inputs(checkpoint: Path, data: str | None, val: str | None, config: Path | None,
                  overrides: list[str]) -> tuple[Path, dict]:
    """Resolve the checkpoint and the training recipe (the checkpoint's, or --config) with overrides."""
    from slimdepth.compress.pipeline import checkpoint_recipe
    from slimdepth.data.registry import build_dataset
    from slimdepth.models.checkpoint import resolve_checkpoint
    from slimdepth.train.run import resolve_config

    ckpt = resolve_checkpoint(checkpoint)
    base = checkpoint_recipe(ckpt) if config is None else None
    if config is None and base is None:
        raise ConfigError(f"{ckpt}: records no training recipe; pass --config RECIPE.yaml")
    recipe = resolve_config(config, overrides, base)
    if data is not None:
        recipe["data"]["train"] = data
    if val is not None:
        recipe["data"]["val"] = val or None
    for spec in (recipe["data"]["train"], recipe["data"].get("val")):
        if spec:
            build_dataset(spec)  # fail now, with the reader's message, not after the first stage
    return ckpt, recipe
