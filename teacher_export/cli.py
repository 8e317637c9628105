"""`x3kd-cache`: build, inspect and check teacher caches."""
from __future__ import annotations

import logging
import sys

import click

from cache_schema.errors import exit_2_on_user_error


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


@main.command()
@click.argument("store")
@exit_2_on_user_error
def inspect(store: str) -> None:
    """Summarise STORE (a path or fsspec URL): samples done, groups, bytes, teachers.

    \b
    Example:
      x3kd-cache inspect cache.zarr
    """
    from cache_schema.summary import summarize

    click.echo(summarize(store).format())


@main.command()
@click.argument("store")
@click.option("--quiet", is_flag=True, help="Print only the verdict line.")
@exit_2_on_user_error
def validate(store: str, quiet: bool) -> None:
    """Read every chunk of STORE and check it against the schema and its checksums.

    Reports every missing, corrupt or incomplete sample by sample token. Exit code 0 when the store
    is clean, 1 when it is not, 2 when STORE is not a readable x3kd cache.

    \b
    Example:
      x3kd-cache validate s3://bucket/nuscenes-trainval.zarr
    """
    from cache_schema.validate import validate as run_validate

    report = run_validate(store, progress=not quiet)
    click.echo(report.summary().splitlines()[-1] if quiet else report.summary())
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
