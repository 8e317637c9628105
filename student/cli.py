"""`x3kd-student`: train and evaluate the camera student from a teacher cache."""
from __future__ import annotations

import logging

import click

from cache_schema.errors import exit_2_on_user_error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Train and evaluate the BEVDepth-style camera student from an X3KD teacher cache."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--cache", required=True, help="Teacher cache (Zarr v3 store path or fsspec URL).")
@click.option("--dataroot", required=True, type=click.Path(), help="nuScenes dataroot the cache was exported from.")
@click.option("--config", "config_file", required=True, type=click.Path(), help="Training config YAML (configs/*.yaml).")
@click.option("--out", required=True, type=click.Path(), help="Run directory: checkpoints, TensorBoard logs.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set loss.xfd.weight=0.5 (value parsed as YAML). Repeatable.")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out (same config).")
@exit_2_on_user_error
def train(cache: str, dataroot: str, config_file: str, out: str, overrides: tuple[str, ...], resume: bool) -> None:
    """Train the student on a teacher cache. Use `torchrun --nproc_per_node K $(which x3kd-student) train ...`
    for data-parallel training."""
    from .train import load_train_config
    from .train import train as run_training

    cfg = load_train_config(config_file, overrides)
    final = run_training(cache, dataroot, cfg, out, resume=resume)
    click.echo(f"final checkpoint: {final}")


@main.command("eval")
@click.option("--checkpoint", required=True, type=click.Path(), help="A checkpoint written by `train`.")
@click.option("--dataroot", required=True, type=click.Path(), help="nuScenes dataroot.")
@click.option("--version", required=True, help="nuScenes version, e.g. v1.0-trainval or v1.0-mini.")
@click.option("--split", required=True, help="nuScenes split, e.g. val or mini_val.")
@click.option("--out", required=True, type=click.Path(), help="Directory for results_nusc.json and metrics.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--score-threshold", type=float, default=None,
              help="Keep detections above this score (default: the box coder's, 0.1).")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when the run kept an EMA.")
@exit_2_on_user_error
def evaluate(checkpoint: str, dataroot: str, version: str, split: str, out: str, device: str,
             score_threshold: float | None, no_ema: bool) -> None:
    """Run the student on a split's camera images and score it with nuscenes-devkit (mAP, NDS)."""
    from .evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(checkpoint, dataroot, version, split, out, device=device, use_ema=not no_ema,
                                  score_threshold=score_threshold)
    click.echo(metrics.table())
    click.echo(f"results and metrics: {out}")


if __name__ == "__main__":
    main()
