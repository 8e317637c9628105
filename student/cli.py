"""`x3kd-student`: train and evaluate the camera student from a teacher cache."""
from __future__ import annotations

import logging

import click

from cache_schema.errors import exit_2_on_user_error  # noqa: F401  (used by commands)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Train and evaluate the BEVDepth-style camera student from an X3KD teacher cache."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    main()
