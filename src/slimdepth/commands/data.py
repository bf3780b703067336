"""``slimdepth data``: generate the synthetic dataset, draw contact sheets, summarise datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import check_output_file, console
from slimdepth.errors import ConfigError
from slimdepth.progress import progress_bar

app = typer.Typer(help="Generate, inspect and check datasets.", no_args_is_help=True)

DATASET_HELP = (
    "Dataset spec: NAME[:PATH][,KEY=VALUE...] (synthetic, kitti, nyu, folder, unlabeled), "
    "or a folder written by `slimdepth data synth`."
)


@app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Directory to write (created; resumed if it holds the same dataset)."),
    num: int = typer.Option(200, "--num", help="Number of frames."),
    size: str = typer.Option("192x640", "--size", help="Frame size HxW."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed and index give the same frame."),
    split: str = typer.Option("train", "--split", help="train, val or test: disjoint frames for one seed."),
    workers: int = typer.Option(1, "--workers", help="Processes rendering in parallel."),
    lidar: bool = typer.Option(True, "--lidar/--no-lidar", help="Write the simulated 64-beam LiDAR depth."),
    seg: bool = typer.Option(True, "--seg/--no-seg", help="Write semantic labels."),
    right: bool = typer.Option(True, "--right/--no-right", help="Write the right stereo image."),
    option: list[str] = typer.Option([], "--option", help="A scene or camera option KEY=VALUE, as in a synthetic "
                                     "spec (traffic, vehicles, structures, layouts, randomize, camera, jpeg, ...); repeatable."),
) -> None:
    """Write synthetic KITTI-like street scenes (RGB, depth, LiDAR, labels, right view, K)."""
    # lazy: numpy, torch and the readers load only when a verb runs (`slimdepth --help` stays fast)
    from slimdepth.data.synthetic import write_synthetic

    from slimdepth.data.registry import parse_option_items

    components = ["depth"] + (["lidar"] if lidar else []) + (["seg"] if seg else []) + (["right"] if right else [])
    options = parse_option_items(option)
    with progress_bar("rendering", "frames") as update:
        summary = write_synthetic(out, num, size, seed, split, components, workers, progress=update, options=options)
    console.print(f"{summary['out']}: {summary['num']} frames of {size} "
                  f"({summary['written']} written, {summary['kept']} already there)")


@app.command("show")
def show(
    dataset: str = typer.Argument(..., help=DATASET_HELP),
    out: Path = typer.Option(..., "--out", help="PNG file for the contact sheet."),
    num: int = typer.Option(4, "--num", help="Number of samples (rows)."),
    start: int = typer.Option(0, "--start", help="Index of the first sample."),
    augment: str = typer.Option("", "--augment", help="Comma-separated augmentations to preview, e.g. rcrop,hflip,rotate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the previewed augmentations."),
    cmap: str = typer.Option("magma", "--cmap", help="Matplotlib colour map of the depth columns."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Draw a contact sheet: image | depth | LiDAR | labels | right image, one row per sample."""
    # lazy: see synth()
    from slimdepth.data.registry import build_dataset
    from slimdepth.data.summary import preview_samples
    from slimdepth.visualize import check_colormap, contact_sheet

    check_output_file(out, overwrite, (".png",))
    check_colormap(cmap)
    if num < 1 or start < 0:
        raise ConfigError("--num must be >= 1 and --start >= 0")
    samples = preview_samples(build_dataset(dataset), start, num, [op.strip() for op in augment.split(",") if op.strip()],
                              seed)
    sheet = contact_sheet(samples, out, cmap=cmap)
    console.print(f"{out}: {len(samples)} samples, {sheet.shape[1]}x{sheet.shape[0]} pixels")


@app.command("info")
def info(
    dataset: str = typer.Argument(..., help=DATASET_HELP),
    num: int = typer.Option(8, "--num", help="Samples to read for the statistics (0 = all)."),
) -> None:
    """Read samples and summarise them: keys, sizes, valid depth fraction and range, K."""
    # lazy: see synth()
    from slimdepth.data.registry import build_dataset
    from slimdepth.data.summary import summarize_dataset

    info = summarize_dataset(build_dataset(dataset), num)
    console.print(f"dataset: {info.name} ({info.kind}), {info.length} samples, "
                  f"evaluation preset: {info.eval_preset or 'none'}")
    console.print(f"keys: {', '.join(info.keys)}")
    console.print("sizes: " + ", ".join(f"{h}x{w}" for h, w in info.sizes))
    if info.valid_fraction is not None and info.depth_range is not None:
        console.print(f"depth over {info.read} samples: {info.valid_fraction * 100:.1f}% valid, "
                      f"{info.depth_range[0]:.2f}..{info.depth_range[1]:.2f} m")
    if info.K is not None:
        K = info.K
        note = " (assumed KITTI-like: the dataset gives no intrinsics)" if info.assumed_intrinsics else ""
        console.print(f"K of sample 0: fx={K[0, 0]:.2f} fy={K[1, 1]:.2f} cx={K[0, 2]:.2f} cy={K[1, 2]:.2f}{note}")
