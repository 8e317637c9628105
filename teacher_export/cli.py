"""`x3kd-cache`: build, inspect and check teacher caches (single-process export).

The installed `x3kd-cache` is `pipelines.cli.main`: this group plus `export --cluster/--scheduler`.
teacher_export never imports pipelines (DESIGN.md); the composition happens on pipelines' side."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from cache_schema.errors import UserInputError, exit_2_on_user_error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="x3kd", message="%(prog)s (x3kd) %(version)s")
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
    Example (on `make demo`'s outputs):
      x3kd-cache inspect demo_out/cache_train.zarr
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
    Examples:
      x3kd-cache validate demo_out/cache_train.zarr
      x3kd-cache validate s3://bucket/nuscenes-trainval.zarr      # any fsspec URL
    """
    from cache_schema.validate import validate as run_validate

    report = run_validate(store, progress=not quiet)
    click.echo(report.summary().splitlines()[-1] if quiet else report.summary())
    sys.exit(0 if report.ok else 1)


@main.command()
@click.argument("store")
@click.option("--sample", "which", default="0", show_default=True,
              help="The sample to draw: its index in the store or its nuScenes sample token.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the PNGs (created if needed).")
@click.option("--dataroot", type=click.Path(file_okay=False),
              help="The dataroot the store was exported from, to draw on the camera JPEGs (grey canvas without it).")
@click.option("--score-threshold", type=click.FloatRange(0, 1, max_open=True), default=0.3, show_default=True,
              help="Teacher heatmap peaks above this are decoded into boxes (magenta).")
@click.option("--scale", type=click.IntRange(1, 32), default=None,
              help="BEV pixels per grid cell.  [default: a picture ~640 pixels wide]")
@exit_2_on_user_error
def show(store: str, which: str, out: Path, dataroot: str | None, score_threshold: float, scale: int | None) -> None:
    """Draw one cached sample of STORE (a path or fsspec URL) as PNGs in --out.

    \b
    bev_teacher_heatmap.png   teacher class heatmaps (max over classes), GT boxes (green), the boxes
                              decoded from the teacher's heatmaps + regression maps (magenta, x = centre)
    bev_teacher_features.png  teacher BEV features, 3 principal components as RGB, GT boxes
    bev_radar.png             the cached radar points (cyan, lines: 0.5 s of Doppler), GT (stores with radar)
    bev_gt.png                GT boxes alone (a store without a LiDAR teacher)
    cameras_depth.png         the cameras with the cached LiDAR depth targets, a colour bar in metres
    cameras_teacher.png       the cameras with the image teacher's masks, boxes, classes, scores
                              and the GT boxes projected (green)
    BEV pictures show x to the right and y up: the ego car (white, at the origin) drives up the
    picture; a scale bar gives metres and a legend the colours.

    \b
    Example:
      x3kd-cache show demo_out/cache_train.zarr --sample 0 --dataroot demo_out/data --out demo_out/show
    """
    from cache_schema import CacheReader
    from detection.pictures import render_cache_sample

    reader = CacheReader(store)
    index = _sample_index(reader, store, which)
    if dataroot is not None:
        reader.check_dataroot(dataroot)
    for path in render_cache_sample(reader[index], reader.config, out, dataroot=dataroot,
                                    score_threshold=score_threshold, scale=scale):
        click.echo(str(path))


def _sample_index(reader, store: str, which: str) -> int:
    """--sample as an index into the store or a sample token; the sample must be done."""
    n = len(reader)
    if which.lstrip("-").isdigit():
        index = int(which)
        if not 0 <= index < n:
            raise UserInputError(f"--sample {which}: {store} holds samples 0..{n - 1}")
    else:
        try:
            index = reader.index_of(which)
        except KeyError:
            raise UserInputError(f"--sample {which!r}: no sample with this token in {store}") from None
    if not reader.done_mask[index]:
        raise UserInputError(f"--sample {which}: sample {index} of {store} is not exported yet (re-run the export "
                             "to finish it)")
    return index


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML file of export options (keys as the long option names with underscores); "
                   "command-line options override it.")
@click.option("--dataroot", help="nuScenes dataroot (holds samples/, sweeps/, maps/ and the version folder), or "
                                 "a Waymo v2 root (holds training/, validation/).")
@click.option("--version", "version", help="Dataset version, e.g. v1.0-trainval, v1.0-mini; waymo-v2 for Waymo.")
@click.option("--split", help="Split to export: train, val, mini_train, mini_val, ...")
@click.option("--out", help="Cache to create or resume: a path or an fsspec URL (s3://...).")
@click.option("--lidar-teacher", help="LiDAR teacher: centerpoint-pillar02, centerpoint-voxel01, "
                                      "centerpoint-voxel0075 (need spconv), mmdet3d-centerpoint (needs the mmdet3d "
                                      "extra), or none.  [default: centerpoint-pillar02]")
@click.option("--lidar-checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="mmdet3d CenterPoint checkpoint file for the LiDAR teacher.")
@click.option("--lidar-config", type=click.Path(exists=True, dir_okay=False),
              help="Another CenterPoint (pillar or voxel) for the built-in teacher: its mmdet3d model dict as "
                   "JSON; for mmdet3d-centerpoint: an mmdet3d config file (.py).")
@click.option("--image-teacher",
              help="Image teacher: maskrcnn (built-in: torchvision's or mmdet's Mask R-CNN R50-FPN files), mmdet "
                   "(any mmdet instance-segmentation model run by mmdet, e.g. Cascade or HTC; its config in the "
                   "export YAML's image_options.config_file), detectron2, or none.  [default: maskrcnn]")
@click.option("--image-checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="The image teacher's weights file (maskrcnn: a torchvision state_dict or an mmdet checkpoint).")
@click.option("--random-init", is_flag=True, default=None,
              help="Allow teachers without checkpoints (random weights: tests and demos only).")
@click.option("--device", help="cpu, cuda, cuda:1, ...  [default: cpu]")
@click.option("--batch-size", type=int, help="Samples per teacher batch.  [default: 1]")
@click.option("--limit", type=int, help="Export only the first N samples of the split (the store holds N).")
@click.option("--num-sweeps", type=int, help="LiDAR sweeps merged into each key frame.  [default: 9]")
@click.option("--radar-sweeps", type=int, help="Scans per radar (the key frame's and those before it) merged into the "
                                            "cache's radar group for the radar student; 0: no radar group.  [default: 6]")
@click.option("--max-radar-points", type=int, help="Radar points a sample may have.  [default: 4096]")
@click.option("--shard-size", type=int, help="Samples per cache shard, the unit of writing and of Dask tasks.  [default: 16]")
@click.option("--bev-quantization", type=click.Choice(["int8", "float16"]),
              help="Storage of the teacher BEV features (see BENCHMARKS.md).  [default: int8]")
@click.option("--depth-stride", type=int, help="Depth targets per N x N image pixels.  [default: 4]")
@click.option("--repair", is_flag=True,
              help="First read every chunk of an existing --out (as `validate` does) and export again the samples "
                   "it finds corrupt or missing, with the same options as the first export.")
@exit_2_on_user_error
def export(config_file, repair, **options) -> None:
    """Run the teachers once over a split and write the cache.

    Resumable: re-running the same command skips samples that are done, and a store made with other
    teachers, data or options is refused. Without checkpoints the teachers refuse to run unless
    --random-init is given.

    \b
    Examples (the first on `make demo`'s outputs: the val cache is complete, so it writes nothing):
      x3kd-cache export --config teachers/lab/export.yaml --lidar-checkpoint teachers/lab/lidar.pth \\
          --image-checkpoint teachers/lab/image.pth --dataroot demo_out/data --version v1.0-trainval \\
          --split val --out demo_out/cache_val.zarr
      x3kd-cache export --dataroot data/nuscenes --version v1.0-trainval --split train \\
          --out cache/train.zarr --lidar-checkpoint centerpoint_pillar02.pth \\
          --image-checkpoint maskrcnn_nuimages.pth --device cuda --batch-size 4
    """
    from teacher_export.export import export as run_export

    run_export_command(config_file, repair, options, run_export)


def run_export_command(config_file, repair: bool, options: dict, runner) -> None:
    """What every `export` command does around `runner(export_options) -> ExportResult` (one process
    here, a Dask cluster in pipelines' command): read the options, repair first if asked, say how to
    continue after Ctrl-C, print the summary."""
    from teacher_export.export import forget_bad_samples, options_from

    from cache_schema.lease import Lease

    export_options = options_from(config_file, options)
    try:
        # one lease from the repair to the end of the export: no other writer gets in between
        with Lease(export_options.out, "store", export_options.storage_options,
                   label=f"--out {export_options.out}"):
            if repair:
                bad = forget_bad_samples(export_options)
                click.echo(f"{export_options.out}: {len(bad)} corrupt or missing sample(s) to export again")
            result = runner(export_options)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: finished shards of {export_options.out} are kept; run the same command again to "
                   "continue (done samples are skipped)", err=True)
        sys.exit(130)
    click.echo(result.summary())


@main.command("fit-teacher")
@click.argument("kind", type=click.Choice(["lidar", "image"]))
@click.option("--dataroot", required=True, help="nuScenes dataroot or Waymo v2 root to fit on (e.g. make-synthetic "
                                                "output).")
@click.option("--version", "version", required=True, help="Dataset version, e.g. v1.0-mini; waymo-v2 for Waymo.")
@click.option("--split", required=True, help="Split to fit on, e.g. mini_train (never the split you evaluate on).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write (lidar: mmdet3d-format CenterPoint; image: torchvision state_dict).")
@click.option("--preset", type=click.Choice(["demo", "lab"]),
              help="Named defaults (teacher_export/fit/presets.py): demo (minutes), lab (the committed teachers/lab/).")
@click.option("--config", help="lidar: CenterPoint config name (centerpoint-pillar02-small, "
                                "centerpoint-pillar02; voxel configs train on a GPU only) or an mmdet3d model dict "
                                "as .json.  [default: centerpoint-pillar02-small]")
@click.option("--backbone", type=click.Choice(["resnet18", "resnet34", "resnet50"]),
              help="image: Mask R-CNN backbone.  [default: resnet50]")
@click.option("--steps", type=int, help="Optimizer steps (or give --epochs).")
@click.option("--epochs", type=int, help="Passes over the split (lidar: samples; image: camera images with GT).")
@click.option("--lr", type=float, help="Peak learning rate of the one-cycle schedule.  [default: 2e-3]")
@click.option("--batch-size", type=int, help="Samples (lidar) or images (image) per step.  [default: 2]")
@click.option("--seed", type=int, help="Initialisation and sample order; same seed, same weights on CPU.  [default: 0]")
@click.option("--device", help="cpu, cuda, ...  [default: cpu]")
@click.option("--num-sweeps", type=int, help="lidar: LiDAR sweeps merged into each key frame.  [default: 9]")
@click.option("--limit", type=int, help="Use only the first N samples of the split.")
@click.option("--augment/--no-augment", default=None,
              help="lidar: augment each step's points and boxes as CenterPoint does (x/y flips, +-22.5 deg, "
                   "0.95-1.05 scale), so the cached maps stay true under the student's BEV augmentation.  "
                   "[default: from preset, else off]")
@click.option("--export-yaml", type=click.Path(dir_okay=False),
              help="Add what `x3kd-cache export --config` needs to run this teacher (teacher name, checkpoint, "
                   "options) to this YAML file, creating it if needed.")
@exit_2_on_user_error
def fit_teacher(kind: str, preset: str | None, backbone: str | None, export_yaml: str | None, **options) -> None:
    """Fit a built-in teacher (KIND: lidar or image) on a split, for the demo and the synthetic lab,
    where no teacher weights can be downloaded (--preset lab: the committed teachers/lab/ teachers).

    lidar trains CenterPoint on LiDAR points and GT boxes with CenterPoint's loss; image trains Mask
    R-CNN (10 nuScenes classes + background) on the camera images, with GT boxes and masks from the
    3D boxes projected into each camera. Both start from random weights.

    \b
    Example (on `make demo`'s data; --preset lab is ~1 hour of one core each, --steps 200 a few minutes):
      x3kd-cache fit-teacher lidar --preset lab --dataroot demo_out/data --version v1.0-trainval \\
          --split train --out demo_out/teachers/lidar.pth --export-yaml demo_out/teachers/export.yaml
      x3kd-cache fit-teacher image --preset lab --dataroot demo_out/data --version v1.0-trainval \\
          --split train --out demo_out/teachers/image.pth --export-yaml demo_out/teachers/export.yaml
      x3kd-cache export --config demo_out/teachers/export.yaml --dataroot demo_out/data \\
          --version v1.0-trainval --split train --out demo_out/cache_own_teachers.zarr
    """
    from teacher_export.fit.options import FitOptions
    from teacher_export.fit.presets import fit_preset

    values = fit_preset(preset, kind) if preset else {}
    if kind == "lidar" and backbone is not None:
        raise UserInputError("--backbone: only for fit-teacher image")
    if kind == "image" and options.get("augment") is not None:
        raise UserInputError("--augment: only for fit-teacher lidar")
    if kind == "image" and options.get("config") is not None:
        raise UserInputError("--config: only for fit-teacher lidar (image: --backbone, --preset)")
    if backbone is not None:
        values.setdefault("image_options", {})["backbone"] = backbone
    given = {k: v for k, v in options.items() if v is not None}
    if "steps" in given:
        values.pop("epochs", None)
    if "epochs" in given:
        values.pop("steps", None)
    values.update(given)
    fit_options = FitOptions(**values)
    if kind == "lidar":
        from teacher_export.fit.lidar import fit_lidar_teacher as fit
    else:
        from teacher_export.fit.image import fit_image_teacher as fit
    result = fit(fit_options)
    click.echo(result.summary())
    if export_yaml:
        from teacher_export.fit.options import update_export_yaml

        update_export_yaml(export_yaml, kind, result)
        click.echo(f"export options for this teacher added to {export_yaml}")


@main.command("eval-teacher")
@click.argument("kind", type=click.Choice(["lidar", "image"]))
@click.option("--cache", required=True, help="A finished export (path or fsspec URL) holding the teacher's output.")
@click.option("--dataroot", type=click.Path(), help="lidar: the nuScenes dataroot the cache was exported from.")
@click.option("--version", "version", help="lidar: dataset version, e.g. v1.0-trainval or v1.0-mini.")
@click.option("--split", help="lidar: the split the cache holds, e.g. val or mini_val.")
@click.option("--out", required=True, type=click.Path(), help="Directory for results_nusc.json and the metrics.")
@click.option("--score-threshold", type=click.FloatRange(0, 1, max_open=True), default=0.05, show_default=True,
              help="Teacher boxes kept from the decoded heatmap peaks.")
@exit_2_on_user_error
def eval_teacher(kind: str, cache: str, dataroot: str | None, version: str | None, split: str | None, out: str,
                 score_threshold: float) -> None:
    """Score the teacher a cache holds, from what it cached, so a user sees whether a teacher checkpoint
    loaded right (and the synthetic lab, how much a teacher knows) before distilling from it.

    KIND lidar: the cached heatmaps and regression maps are decoded by the shared CenterPoint box coder
    (all classes in one group, rotated NMS) and scored by nuscenes-devkit's DetectionEval (mAP, NDS).

    KIND image: the cached detections (boxes, classes, scores, masks pasted into their boxes) against the
    cached GT boxes projected into each camera as instance masks: COCO box and mask AP by pycocotools.

    \b
    Examples (on `make demo`'s outputs):
      x3kd-cache eval-teacher lidar --cache demo_out/cache_val.zarr --dataroot demo_out/data \\
          --version v1.0-trainval --split val --out demo_out/teacher_lidar
      x3kd-cache eval-teacher image --cache demo_out/cache_val.zarr --out demo_out/teacher_image
    """
    if kind == "lidar":
        missing = [f"--{k}" for k, v in (("dataroot", dataroot), ("version", version), ("split", split)) if not v]
        if missing:
            raise UserInputError(f"eval-teacher lidar: give {', '.join(missing)} (the devkit scores against its tables)")
        from teacher_export.evaluate import evaluate_cached_lidar_teacher

        metrics = evaluate_cached_lidar_teacher(cache, dataroot, version, split, out, score_threshold=score_threshold)
        click.echo(metrics.table())
    else:
        from teacher_export.evaluate import evaluate_cached_image_teacher

        result = evaluate_cached_image_teacher(cache, out)
        click.echo(f"{result['images']} camera images, {result['gt_instances']} GT instances, "
                   f"{result['detections']} teacher detections")
        click.echo("| | " + " | ".join(result["bbox"]) + " |\n| --- |" + " ---: |" * len(result["bbox"]))
        for kind_ in ("bbox", "segm"):
            click.echo(f"| {'box' if kind_ == 'bbox' else 'mask'} | " + " | ".join(f"{v:.4f}" for v in result[kind_].values())
                       + " |")
    click.echo(f"results and metrics: {out}")


def _parse_image_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserInputError(f"--image-size {text!r}: expected WIDTHxHEIGHT, e.g. 352x198") from None
    return (w, h)


@main.command("make-synthetic")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--preset", type=click.Choice(["test", "demo", "lab"]), default="test", show_default=True,
              help="test: 2 scenes x 3 samples at 160x90 (seconds); demo: 10 scenes x 10 samples at 352x198; "
                   "lab: the synthetic lab's dataset (README, 'The synthetic lab').")
@click.option("--scenes", type=int, help="Number of scenes (v1.0-mini: at most 10).  [default: from preset]")
@click.option("--samples-per-scene", type=int, help="Key frames per scene, 2 Hz.  [default: from preset]")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--image-size", help="Camera image size WIDTHxHEIGHT; intrinsics scale from 1600x900.  "
                                   "[default: from preset]")
@click.option("--sweeps", "sweeps_per_sample", type=int, help="LiDAR sweeps before each key frame.  "
                                                              "[default: from preset]")
@click.option("--objects", "objects_per_scene", type=int, help="Objects per scene.  [default: from preset]")
@click.option("--radar-sweeps", type=click.IntRange(1),
              help="Scans of each of the five radars per key frame (13 Hz), the key frame's included, as "
                   "`export --radar-sweeps` counts them.  [default: 6]")
@click.option("--max-object-range", type=float,
              help="Keep every object within this many metres of the ego car (unset: each class's devkit "
                   "evaluation range; lab: 24, all on a +-25.6 m grid).  [default: from preset]")
@click.option("--class-mix", type=click.Choice(["nuscenes", "uniform"]),
              help="Class frequencies: nuScenes-like, or every detection class equally often.  [default: from preset]")
@click.option("--version", type=click.Choice(["v1.0-mini", "v1.0-trainval"]),
              help="Table version; scene names come from its train/val splits (v1.0-mini: at most 10 scenes).  "
                   "[default: from preset: v1.0-mini, lab v1.0-trainval]")
@click.option("--format", "data_format", type=click.Choice(["nuscenes", "waymo"]), default="nuscenes",
              show_default=True,
              help="nuscenes: a nuScenes dataroot; waymo: a Waymo Open Dataset v2 Parquet tree (OUT/training, "
                   "OUT/validation; scenes are segments, samples 10 Hz frames, --image-size the front camera's).")
@exit_2_on_user_error
def make_synthetic(out: Path, preset: str, scenes: int | None, samples_per_scene: int | None, seed: int,
                   image_size: str | None, sweeps_per_sample: int | None, objects_per_scene: int | None,
                   radar_sweeps: int | None, max_object_range: float | None, class_mix: str | None,
                   version: str | None, data_format: str) -> None:
    """Write a synthetic dataset to OUT (new or empty directory).

    nuscenes: nuscenes-devkit loads it like the real thing (NuScenes(version, dataroot=OUT)); val scenes
    carry v1.0-mini's mini_val names, so DetectionEval runs with eval_set='mini_val'. Sensors: LIDAR_TOP
    (key frames and sweeps), the six cameras (key frames) and the five radars (key frames and
    sweeps, nuScenes' 18-field .pcd that RadarPointCloud.from_file reads).

    waymo: the same worlds through a Waymo rig, in the v2 Parquet layout with the dataset's schema: five
    cameras, the 64-beam TOP LiDAR as range images (two returns, per-pixel pose), LiDAR and camera-synced
    boxes of types vehicle, pedestrian, cyclist and sign.
    """
    from dataclasses import replace

    if data_format == "waymo":
        from dataset_access.synthetic.waymo import PRESETS as WAYMO_PRESETS, write_waymo_dataset

        ignored = [flag for flag, value in (("--sweeps", sweeps_per_sample), ("--radar-sweeps", radar_sweeps),
                                            ("--version", version)) if value is not None]
        if ignored:
            raise UserInputError(f"{', '.join(ignored)}: not a Waymo option (the TOP LiDAR spins once per frame, "
                                 "there are no radars and no table versions)")
        overrides = {"segments": scenes, "frames_per_segment": samples_per_scene,
                     "objects_per_segment": objects_per_scene, "max_object_range": max_object_range,
                     "class_mix": class_mix,
                     "front_width": _parse_image_size(image_size)[0] if image_size else None}
        spec = replace(WAYMO_PRESETS[preset], seed=seed, **{k: v for k, v in overrides.items() if v is not None})
        path = write_waymo_dataset(out, spec)
        click.echo(f"wrote {spec.segments} Waymo v2 segments x {spec.frames_per_segment} frames to {path}")
        return
    from dataset_access.synthetic import PRESETS, write_dataset

    overrides = {"scenes": scenes, "samples_per_scene": samples_per_scene, "sweeps_per_sample": sweeps_per_sample,
                 "objects_per_scene": objects_per_scene,
                 # the generator counts the scans before the key frame's
                 "radar_sweeps_per_sample": radar_sweeps - 1 if radar_sweeps is not None else None,
                 "image_size": _parse_image_size(image_size) if image_size else None,
                 "max_object_range": max_object_range, "class_mix": class_mix, "version": version}
    spec = replace(PRESETS[preset], seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    path = write_dataset(out, spec)
    click.echo(f"wrote {spec.scenes} scenes x {spec.samples_per_scene} samples ({spec.version}) to {path}")


if __name__ == "__main__":
    main()
