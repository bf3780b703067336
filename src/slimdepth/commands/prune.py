"""``slimdepth prune``: compress a trained model to a MACs budget (masks, gating, magnitude, uniform) or a
latency budget on a runtime (masks, magnitude, uniform)."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import console
from slimdepth.errors import ConfigError


def prune(
    checkpoint: Path = typer.Argument(None, help="Trained checkpoint or run directory to compress (not with --resume)."),
    method: str = typer.Option(None, "--method", help="masks (method 1), gating (method 2), magnitude or uniform."),
    target_macs: float = typer.Option(None, "--target-macs", help="Fraction of the MACs to keep, e.g. 0.5."),
    target_latency: float = typer.Option(None, "--target-latency", help="Latency budget in ms (batch 1) on --runtime at --size, instead of --target-macs."),
    runtime: str = typer.Option(None, "--runtime", help="Latency budget: the runtime it is measured on, ort (default), torch, openvino or litert."),
    size: str = typer.Option(None, "--size", help="Latency budget: the deployed input size HxW (default: the training size)."),
    latency_table: Path = typer.Option(None, "--latency-table", help="Latency budget: a table from `slimdepth latency-table` (default: measured at the start)."),
    threads: int = typer.Option(None, "--threads", help="Latency budget: runtime threads (default 2)."),
    max_tries: int = typer.Option(None, "--max-tries", help="Latency budget: measure-and-tighten rounds at most (default 4)."),
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
    """Compress a trained model to a MACs or latency budget: learn or choose what to remove, remove it, fine-tune."""
    # lazy: torch and the training machinery load only when a verb runs (`slimdepth --help` stays fast)
    from slimdepth.compress.prune import PruneSettings, prune_checkpoint, read_prune_state, run_prune
    from slimdepth.train.run import fit_with_progress

    given = {"method": method, "target_macs": target_macs, "steps": steps, "warmup_frac": warmup_frac,
             "joint_frac": joint_frac, "mask_init": mask_init, "ramp_frac": ramp_frac, "mask_lr": mask_lr,
             "compression_weight": compression_weight, "cost": cost, "estimate": estimate,
             "gate_layers": [s.strip() for s in gate_layers.split(",") if s.strip()] if gate_layers is not None else None,
             "l1_weight": l1_weight, "density": density,
             "densities": _parse_densities(densities) if densities is not None else None,
             "target_latency": target_latency, "runtime": runtime, "latency_size": size,
             "latency_table": str(latency_table) if latency_table is not None else None, "threads": threads,
             "max_tries": max_tries}
    latency_only = [k for k in ("runtime", "latency_size", "latency_table", "threads", "max_tries") if given[k] is not None]
    if latency_only and target_latency is None and not resume:
        names = {"latency_size": "--size"}
        raise ConfigError(f"{names.get(latency_only[0], '--' + latency_only[0].replace('_', '-'))} is for a latency "
                          "budget: add --target-latency MS")
    given = {k: v for k, v in given.items() if v is not None}
    if resume:
        extra = [name for name, value in (("CHECKPOINT", checkpoint), ("--data", data), ("--val", val),
                                           ("--config", config), ("--set", set_ or None)) if value is not None]
        extra += ["--" + k.replace("_", "-") for k in given]
        if extra:
            raise ConfigError(f"--resume continues with the run's saved settings; leave out {', '.join(extra)}")
        read_prune_state(out)
        console.print(f"prune run: {out}")
        state = run_prune(out, fit=fit_with_progress, log=console.print)
    else:
        if checkpoint is None:
            raise ConfigError("give the checkpoint to compress, or --resume --out RUN_DIR")
        if "method" not in given or ("target_macs" not in given and "target_latency" not in given):
            raise ConfigError("--method and a budget (--target-macs or --target-latency) are required")
        state = prune_checkpoint(checkpoint, PruneSettings(**given), out, data=data, val=val, config=config,
                                 overrides=set_, fit=fit_with_progress, log=console.print)
    r = state["result"]
    console.print(f"{state['settings']['method']}: {r['macs'] / 1e9:.3f} GMACs = {r['ratio']:.3f} of "
                  f"{state['original_macs'] / 1e9:.3f} at {state['input_size'][0]}x{state['input_size'][1]}, "
                  f"{r['params'] / 1e6:.3f} M parameters")
    lat = r.get("latency")
    if lat:
        h, w = lat["size"]
        console.print(f"latency on {lat['runtime']} at {h}x{w}: predicted {lat['predicted_ms']:.3f} ms, measured "
                      f"{lat['measured_ms']:.3f} ms beside the unpruned network's {lat['reference_ms']:.3f} ms = "
                      f"{lat['calibrated_ms']:.3f} ms at the table's calibration; budget {lat['budget_ms']:g} ms "
                      f"({'met' if lat['met'] else 'MISSED'})")
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
