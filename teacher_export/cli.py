"""`x3kd-cache`: build, inspect and check teacher caches."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from cache_schema.errors import UserInputError, exit_2_on_user_error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Run X3KD's teachers once and keep what they produce in a Zarr v3 cache.

    The cache holds everything the student needs besides the camera JPEGs: sample index,
    calibration, GT boxes, LiDAR depth targets, LiDAR-teacher BEV features/heatmaps/regression
    maps and image-teacher instance detections.
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


def _parse_image_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserInputError(f"--image-size {text!r}: expected WIDTHxHEIGHT, e.g. 352x198") from None
    return (w, h)


@main.command("make-synthetic")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["test", "demo"]), default="test", show_default=True,
              help="test: 2 scenes x 3 samples at 160x90 (seconds); demo: 10 scenes x 10 samples at 352x198.")
@click.option("--scenes", type=int, help="Number of scenes (v1.0-mini: at most 10).  [default: from preset]")
@click.option("--samples-per-scene", type=int, help="Key frames per scene, 2 Hz.  [default: from preset]")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--image-size", help="Camera image size WIDTHxHEIGHT; intrinsics scale from 1600x900.  "
                                   "[default: from preset]")
@click.option("--sweeps", "sweeps_per_sample", type=int, help="LiDAR sweeps before each key frame.  "
                                                              "[default: from preset]")
@click.option("--objects", "objects_per_scene", type=int, help="Objects per scene.  [default: from preset]")
@click.option("--version", type=click.Choice(["v1.0-mini", "v1.0-trainval"]), default="v1.0-mini", show_default=True,
              help="Table version; scene names come from its train/val splits.")
@exit_2_on_user_error
def make_synthetic(out: Path, preset: str, scenes: int | None, samples_per_scene: int | None, seed: int,
                   image_size: str | None, sweeps_per_sample: int | None, objects_per_scene: int | None,
                   version: str) -> None:
    """Write a synthetic nuScenes-format dataroot to OUT (new or empty directory).

    nuscenes-devkit loads it like the real thing (NuScenes(version, dataroot=OUT)); val scenes carry
    v1.0-mini's mini_val names, so DetectionEval runs with eval_set='mini_val'.
    """
    from dataclasses import replace

    from teacher_export.data.synthetic import PRESETS, write_dataset

    overrides = {"scenes": scenes, "samples_per_scene": samples_per_scene, "sweeps_per_sample": sweeps_per_sample,
                 "objects_per_scene": objects_per_scene,
                 "image_size": _parse_image_size(image_size) if image_size else None}
    spec = replace(PRESETS[preset], seed=seed, version=version,
                   **{k: v for k, v in overrides.items() if v is not None})
    path = write_dataset(out, spec)
    click.echo(f"wrote {spec.scenes} scenes x {spec.samples_per_scene} samples ({spec.version}) to {path}")


if __name__ == "__main__":
    main()
