"""`x3kd-student`: train and evaluate the camera or radar student from a teacher cache."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from cache_schema.errors import exit_2_on_user_error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="x3kd", message="%(prog)s (x3kd) %(version)s")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Train and evaluate the BEVDepth-style camera student (or the radar student) from an X3KD teacher
    cache."""
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--cache", required=True, help="Teacher cache (Zarr v3 store path or fsspec URL).")
@click.option("--dataroot", type=click.Path(),
              help="nuScenes dataroot the cache was exported from (the camera student reads its JPEGs; the radar "
                   "student needs none: its points are in the cache).")
@click.option("--config", "config_file", required=True, type=click.Path(), help="Training config YAML (configs/*.yaml).")
@click.option("--out", required=True, type=click.Path(), help="Run directory: checkpoints, TensorBoard logs.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set loss.xfd.weight=0.5 (the value is parsed as YAML). The keys are "
                   "the config file's blocks (model, loss, data, optim, train), documented field by field in "
                   "student/config.py and student/train_config.py; -v prints the resolved config. Repeatable.")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out (same cache; only length, "
                                              "logging and checkpointing settings may change).")
@click.option("--overwrite", is_flag=True, help="Delete the run already in --out and start anew (without it such an "
                                                "--out is refused).")
@click.option("--quiet", is_flag=True, help="Progress as a plain line every 30 s instead of a bar (the default where "
                                            "stderr is not a terminal: log files, batch jobs).")
@exit_2_on_user_error
def train(cache: str, dataroot: str | None, config_file: str, out: str, overrides: tuple[str, ...], resume: bool,
          overwrite: bool, quiet: bool) -> None:
    """Train the student on a teacher cache. Use `torchrun --nproc_per_node K $(which x3kd-student) train ...`
    for data-parallel training.

    Ctrl-C or SIGTERM (a cluster's pre-emption signal) stops after the current step and writes its
    checkpoint; the same command with --resume continues exactly.

    \b
    Examples (on `make demo`'s outputs):
      x3kd-student train --cache demo_out/cache_train.zarr --dataroot demo_out/data \\
          --config configs/lab.yaml --out runs/lab --set train.steps=300
      x3kd-student train --cache demo_out/cache_train.zarr --config configs/radar_lab.yaml \\
          --out runs/radar_kd --set loss.det.weight=0 --set train.steps=400  # radar, KD only: no GT read
    """
    import signal
    import sys

    from .train import TrainingInterrupted

    from .train_config import load_train_config
    from .train import train as run_training

    cfg = load_train_config(config_file, overrides)
    if click.get_current_context().find_root().params.get("verbose"):
        import yaml

        click.echo("resolved config (the file with every --set applied):\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    try:
        final = run_training(cache, dataroot, cfg, out, resume=resume, overwrite=overwrite, quiet=quiet,
                             report=click.echo)
    except TrainingInterrupted as e:
        click.echo(str(e), err=True)
        sys.exit(128 + int(e.signum) if e.signum in (signal.SIGINT, signal.SIGTERM) else 1)
    click.echo(f"final checkpoint: {final}")


@main.command("eval")
@click.option("--checkpoint", type=click.Path(), help="A checkpoint written by `train` (or `release`).")
@click.option("--onnx", "onnx_file", type=click.Path(), help="Or a student exported by `export-onnx`, run by "
              "onnxruntime.")
@click.option("--dataroot", required=True, type=click.Path(), help="nuScenes dataroot, or a Waymo v2 root.")
@click.option("--version", required=True, help="nuScenes version, e.g. v1.0-trainval or v1.0-mini; waymo-v2 for "
                                                "a Waymo Open Dataset v2 root.")
@click.option("--split", required=True, help="nuScenes split, e.g. val or mini_val; Waymo: validation, training.")
@click.option("--out", required=True, type=click.Path(), help="Directory for the results (results_nusc.json, or "
                                                               "detections_waymo.json) and metrics.json.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda when a GPU is available), cpu, cuda, "
                                                                   "cuda:1, ...")
@click.option("--score-threshold", type=float, default=None,
              help="Keep detections above this score.  [default: the config's model.test, 0.1]")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when the run kept an EMA.")
@click.option("--render", type=click.IntRange(min=0), default=0, show_default=True,
              help="Draw the first N samples of the split (OUT/render/: BEV over the student's heatmap and the "
                   "cameras, GT green, predictions blue; the devkit's BEV over the LiDAR points) and the "
                   "devkit's PR and TP-error curves (OUT/plots/).")
@click.option("--render-threshold", type=click.FloatRange(0, 1, max_open=True), default=0.3, show_default=True,
              help="Predictions drawn in the --render pictures score at least this.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Score only the first N samples of the split (quick checks; not comparable to full-split scores).")
@click.option("--other-dataroot", is_flag=True,
              help="Evaluate on a dataroot whose tables differ from the training dataroot's (refused otherwise).")
@exit_2_on_user_error
def evaluate(checkpoint: str | None, onnx_file: str | None, dataroot: str, version: str, split: str, out: str,
             device: str, score_threshold: float | None, no_ema: bool, render: int, render_threshold: float,
             other_dataroot: bool, limit: int | None) -> None:
    """Run the student on a split's camera images (or radar scans) and score it with nuscenes-devkit
    (mAP, NDS), or on a Waymo v2 split with Waymo's metrics (AP/APH at LEVEL_1/2, LET-3D-AP/APL).

    \b
    Example (on `make demo`'s outputs, after `train`'s example):
      x3kd-student eval --checkpoint runs/lab/checkpoints/step_0000300.pt --dataroot demo_out/data \\
          --version v1.0-trainval --split val --out runs/lab/eval --render 4
    """
    from .evaluate import evaluate_checkpoint

    checkpoint = _one_student(checkpoint, onnx_file)
    evaluate_checkpoint(checkpoint, dataroot, version, split, out, device=device, use_ema=not no_ema,
                        score_threshold=score_threshold, render=render, render_threshold=render_threshold,
                        other_dataroot=other_dataroot, limit=limit, report=click.echo)
    click.echo(f"results and metrics: {out}")
    if render:
        click.echo(f"pictures: {out}/render (samples), {out}/plots (PR and TP-error curves)")


def _one_student(checkpoint: str | None, onnx_file: str | None) -> str:
    """The student file of --checkpoint or --onnx (exactly one of them)."""
    from cache_schema.errors import UserInputError

    if bool(checkpoint) == bool(onnx_file):
        raise UserInputError("--checkpoint or --onnx: give exactly one student")
    if onnx_file and Path(onnx_file).suffix != ".onnx":
        raise UserInputError(f"--onnx {onnx_file}: expected an .onnx file written by export-onnx")
    if checkpoint and Path(checkpoint).suffix == ".onnx":
        raise UserInputError(f"--checkpoint {checkpoint}: an ONNX file; pass it as --onnx")
    return checkpoint or onnx_file


@main.command("predict")
@click.option("--checkpoint", type=click.Path(), help="A checkpoint written by `train` (or `release`).")
@click.option("--onnx", "onnx_file", type=click.Path(), help="Or a student exported by `export-onnx`.")
@click.option("--dataroot", required=True, type=click.Path(), help="nuScenes dataroot.")
@click.option("--version", required=True, help="nuScenes version, e.g. v1.0-test.")
@click.option("--split", required=True, help="nuScenes split, e.g. test.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The results JSON to write.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--score-threshold", type=float, default=None,
              help="Keep detections above this score.  [default: the config's model.test, 0.1]")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when the run kept an EMA.")
@exit_2_on_user_error
def predict(checkpoint: str | None, onnx_file: str | None, dataroot: str, version: str, split: str, out: str,
            device: str, score_threshold: float | None, no_ema: bool) -> None:
    """Write the student's detections on a split as a nuScenes submission (results JSON with its meta
    block), without scoring: for a split without annotations, such as v1.0-test.

    \b
    Example (on `make demo`'s outputs):
      x3kd-student predict --checkpoint demo_out/student_x3kd/checkpoints/step_0000260.pt \\
          --dataroot demo_out/data --version v1.0-trainval --split val --out demo_out/submission.json
    """
    from .evaluate import predict_to_file

    path, count = predict_to_file(_one_student(checkpoint, onnx_file), dataroot, version, split, out, device=device,
                                  use_ema=not no_ema, score_threshold=score_threshold)
    click.echo(f"{path}: detections for {count} samples of {version} {split}")


@main.command("export-onnx")
@click.option("--checkpoint", required=True, type=click.Path(), help="A checkpoint written by `train` (or `release`).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The ONNX file to write.")
@click.option("--opset", type=int, help="ONNX opset.  [default: the lowest the student needs: 16, or 19 with a "
                                        "deformable conv]")
@click.option("--no-ema", is_flag=True, help="Export the raw weights even when the run kept an EMA.")
@click.option("--no-check", is_flag=True, help="Skip running the file with onnxruntime beside PyTorch.")
@exit_2_on_user_error
def export_onnx_command(checkpoint: str, out: str, opset: int | None, no_ema: bool, no_check: bool) -> None:
    """Export the camera student to ONNX (one sample of the config's cameras and image size; inputs: the
    images and camera parameters, outputs: the head's maps; decoding stays in x3kd's coder). Then run it
    with onnxruntime beside PyTorch on example inputs and print the largest difference.

    \b
    Example (on `make demo`'s outputs):
      x3kd-student export-onnx --checkpoint demo_out/student_x3kd/checkpoints/step_0000260.pt \\
          --out demo_out/student_x3kd.onnx
      x3kd-student eval --onnx demo_out/student_x3kd.onnx --dataroot demo_out/data --version v1.0-trainval \\
          --split val --out demo_out/eval_x3kd_onnx
    """
    from .deploy import export_onnx

    result = export_onnx(checkpoint, out, opset=opset, use_ema=not no_ema, check=not no_check)
    size = Path(out).stat().st_size / 2**20
    click.echo(f"{out}: opset {result['opset']}, {size:.1f} MB, inputs {', '.join(result['inputs'])}; "
               f"{len(result['outputs'])} head maps")
    if "max_abs_diff" in result:
        click.echo(f"onnxruntime vs PyTorch on example inputs: largest difference {result['max_abs_diff']:.2e} "
                   f"(outputs up to {result['max_abs_value']:.2f})")


@main.command("release")
@click.option("--checkpoint", required=True, type=click.Path(), help="A checkpoint written by `train`.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The released file to write (.pt).")
@click.option("--no-ema", is_flag=True, help="Release the raw weights even when the run kept an EMA.")
@exit_2_on_user_error
def release(checkpoint: str, out: str, no_ema: bool) -> None:
    """Write a trained student as it ships: inference weights only (EMA when kept) in float16, with its
    config, step and provenance; `eval` and `train --set train.init_from=...` read it like a checkpoint.

    \b
    Example (on `make demo`'s outputs):
      x3kd-student release --checkpoint demo_out/student_x3kd/checkpoints/step_0000260.pt \\
          --out demo_out/student_x3kd.pt
    """
    from .run_dir import release_checkpoint

    released = release_checkpoint(checkpoint, out, use_ema=not no_ema)
    size = Path(out).stat().st_size / 2**20
    click.echo(f"{out}: step {released['step']}, {'EMA' if released['released_from']['ema'] else 'raw'} weights, "
               f"float16, {size:.1f} MB")


@main.command("convert-bevdepth")
@click.option("--checkpoint", required=True, type=click.Path(),
              help="A BEVDepth checkpoint (its Lightning .ckpt, or a state_dict under its names).")
@click.option("--config", "config_file", required=True, type=click.Path(),
              help="The config of the student it is: configs/bevdepth_r50_256x704_2key_cbgs_da_ema.yaml or "
                   "configs/bevdepth_r50_256x704_24e_2key.yaml (the architecture must match the checkpoint's).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config value.")
@click.option("--out", required=True, type=click.Path(), help="The x3kd checkpoint to write (.pt).")
@exit_2_on_user_error
def convert_bevdepth(checkpoint: str, config_file: str, overrides: tuple[str, ...], out: str) -> None:
    """Turn a BEVDepth checkpoint into an x3kd student checkpoint, which `eval` scores and
    `train --set train.init_from=...` starts from (train also takes the BEVDepth file directly).

    \b
    Example:
      x3kd-student convert-bevdepth --checkpoint bev_depth_lss_r50_256x704_128x128_20e_cbgs_2key_da_ema.pth \\
          --config configs/bevdepth_r50_256x704_2key_cbgs_da_ema.yaml --out bevdepth.pt
      x3kd-student eval --checkpoint bevdepth.pt --dataroot data/nuscenes --version v1.0-trainval \\
          --split val --out runs/bevdepth_eval
    """
    from cache_schema.identity import file_sha256

    from .bevdepth_interop import load_bevdepth_weights
    from detection.weights import save_atomic
    from .models.student import build_student
    from .train_config import load_train_config

    cfg = load_train_config(config_file, overrides)
    model = build_student(cfg.student)
    load_bevdepth_weights(model, checkpoint)
    save_atomic({"model": model.state_dict(), "ema": None, "step": 0, "config": cfg.to_dict(),
                 "provenance": {"converted_from": {"path": str(checkpoint), "sha256": file_sha256(checkpoint)}}},
                out)
    click.echo(f"x3kd checkpoint: {out}")



@main.command("pretrain-backbone")
@click.option("--dataroot", required=True, type=click.Path(), help="A dataroot made for pretraining, e.g. "
              "`x3kd-cache make-synthetic --preset lab --seed 1000` (other worlds than the lab's).")
@click.option("--version", "version", required=True, help="Its table version, e.g. v1.0-trainval.")
@click.option("--split", default="train", show_default=True, help="The split whose crops it learns from.")
@click.option("--val-split", default="val", show_default=True,
              help="The split whose crops measure held-out accuracy ('none' to skip).")
@click.option("--config", "config_file", required=True, type=click.Path(),
              help="The training config whose backbone (model.backbone.depth, base_width) is pretrained.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The backbone weights to write (a torchvision ResNet state dict; model.backbone.weights loads it).")
@click.option("--steps", type=click.IntRange(1), default=3000, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True, help="Crops per step.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3, show_default=True,
              help="Peak learning rate (AdamW, cosine).")
@click.option("--seed", type=int, default=0, show_default=True, help="Initialisation, crop sampling and order.")
@click.option("--crop-size", type=click.IntRange(16), default=64, show_default=True, help="Crop side in pixels.")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N samples of each split (tests).")
@exit_2_on_user_error
def pretrain_backbone(dataroot: str, version: str, split: str, val_split: str, config_file: str, out: str, steps: int,
                      batch_size: int, lr: float, seed: int, crop_size: int, limit: int | None) -> None:
    """Pretrain the student's image backbone on generic recognition: object crops of a dataset's camera
    images classified into the ten detection classes and background (the synthetic lab's ImageNet; see
    student/pretrain.py). Labels come from the dataset's GT boxes, never from a teacher.

    \b
    Example (the lab's committed backbone, teachers/lab/README.md):
      x3kd-cache make-synthetic lab_pretrain/data --preset lab --seed 1000
      x3kd-student pretrain-backbone --dataroot lab_pretrain/data --version v1.0-trainval \\
          --config configs/lab.yaml --out teachers/lab/backbone.pth
    """
    from .pretrain import PretrainOptions, pretrain_backbone as run
    from .train_config import load_train_config

    backbone = load_train_config(config_file).student.backbone
    options = PretrainOptions(dataroot=dataroot, version=version, out=out, depth=backbone.depth,
                              base_width=backbone.base_width, split=split,
                              val_split=None if val_split.lower() == "none" else val_split, crop_size=crop_size,
                              steps=steps, batch_size=batch_size, lr=lr, seed=seed, limit=limit)
    click.echo(run(options).summary())


if __name__ == "__main__":
    main()
