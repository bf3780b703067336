"""``slimdepth pseudo-label``: write a folder dataset whose dense labels come from teachers or stereo."""

from __future__ import annotations

from pathlib import Path

import typer

from slimdepth.commands.common import console


def pseudo_label(
    data: str = typer.Option(..., "--data", help="Dataset to label, e.g. synthetic,num=200,right=true or kitti:DIR,right=true."),
    out: Path = typer.Option(..., "--out", help="Folder dataset to write (resumed when rerun with the same settings)."),
    depth_teacher: str = typer.Option(None, "--depth-teacher", help="Checkpoint or run directory whose depth becomes the label."),
    stereo: bool = typer.Option(False, "--stereo", help="Depth from the stereo pair (SGM), compensated with the frame's LiDAR."),
    seg_teacher: str = typer.Option(None, "--seg-teacher", help="Checkpoint or run directory with a segmentation head."),
    device: str = typer.Option("cpu", "--device", help="Where teachers run: cpu, cuda or auto."),
    report: bool = typer.Option(False, "--report", help="--stereo: score raw stereo, compensated stereo and LiDAR against the dense ground truth."),
) -> None:
    """Make dense training labels: a depth teacher, or stereo matching compensated with sparse LiDAR."""
    from slimdepth.distill.pseudo_label import pseudo_label as run  # lazy: torch and OpenCV load only when it runs
    from slimdepth.options import resolve_device
    from slimdepth.progress import progress_bar

    with progress_bar("labeling", "frames") as update:
        summary = run(data, out, depth_teacher=depth_teacher, stereo=stereo, seg_teacher=seg_teacher,
                      device=str(resolve_device(device)), report=report, progress=update)
    console.print(f"{summary['out']}: {summary['frames']} frames ({summary['written']} written, {summary['kept']} "
                  f"already there); read it as folder:{summary['out']}")
    rep = summary.get("report")
    if rep and rep.get("frames"):
        console.print(f"label accuracy on {rep['frames']} frames against the dense ground truth (0-80 m):")
        console.print(f"{'source':<13}{'coverage':>9}{'AbsRel':>9}{'RMSE m':>9}{'d1':>8}")
        for source in ("raw", "compensated", "lidar"):
            if source in rep:
                r = rep[source]
                console.print(f"{source:<13}{r['coverage']:>9.3f}{r['abs_rel']:>9.4f}{r['rmse']:>9.3f}{r['d1']:>8.3f}")
    elif rep:
        console.print(rep["note"])
