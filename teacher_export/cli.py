"""`x3kd-cache`: build, inspect and check teacher caches."""
from __future__ import annotations

import logging

import click

from cache_schema.errors import exit_2_on_user_error  # noqa: F401  (used by commands)


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


if __name__ == "__main__":
    main()
