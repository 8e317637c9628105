"""The single-process export: run the teachers once over a split and write the cache.

`Exporter` holds what is expensive (the dataset index and the teachers, built on first use) and turns
sample indices into cache samples; `export()` drives it over a split with a progress bar, skipping
samples that are already done. `pipelines` runs the same `Exporter` per Dask worker over shards, with
the split summarised (`SplitSummary`) and each shard's samples built (`SampleSubset`) by the client, so
that no worker holds the dataset's tables.
"""
from __future__ import annotations

import hashlib
import logging
import platform
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from cache_schema import BevGrid, CacheWriter, StoreConfig
from cache_schema.grid import NUSCENES_CLASSES, ClassSetup
from cache_schema.errors import UserInputError
from cache_schema.identity import file_sha256, images_fingerprint
from cache_schema.lease import Lease
from cache_schema.layout import CAMERA_NAMES, GROUPS, RegressionEncoding
from cache_schema.statistics import feature_sums
from cache_schema.views import (CacheSample, DepthTargets, GroundTruth, ImageTeacherDetections, LidarTeacherMaps,
                                RadarPoints, SampleMeta)
from cache_schema.store import refuse_volatile, software_version
from cache_schema.writer import forget_samples
from dataset_access.images import read_rgb
from detection.device import parse_device, torch_device
from dataset_access.nuscenes.samples import NuScenesSamples, SampleSubset
from dataset_access.samples import SampleInfo
from dataset_access.open import open_split
from dataset_access.waymo.samples import WaymoSamples, is_waymo_version
from teacher_export.targets import depth_images
from teacher_export.teachers.image_protocol import ImageTeacher, pad_instances
from teacher_export.teachers.lidar_protocol import LidarTeacher

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    """Everything `x3kd-cache export` takes; also the keys of its YAML config file."""

    dataroot: str
    version: str
    split: str
    out: str
    lidar_teacher: str | None = "centerpoint-pillar02"
    lidar_checkpoint: str | None = None
    # built-in teacher: another CenterPoint (pillar or voxel) as an mmdet3d model dict in a .json file;
    # mmdet3d-centerpoint: an mmdet3d config file
    lidar_config: str | None = None
    image_teacher: str | None = "maskrcnn"
    image_checkpoint: str | None = None
    image_options: dict[str, Any] = field(default_factory=dict)  # MaskRCNNConfig fields (class_names, ...)
    random_init: bool = False
    device: str = "cpu"
    batch_size: int = 1
    limit: int | None = None
    num_sweeps: int = 9
    shard_size: int = 16
    bev_quantization: str = "int8"
    depth_stride: int = 4
    max_gt_boxes: int = 512
    max_instances: int = 32
    # scans per radar (key frame included) merged into the cache's radar group; 0 = no radar group.
    # Dataroots without radar data get no radar group either.
    radar_sweeps: int = 6
    max_radar_points: int = 4096
    storage_options: dict[str, Any] | None = None
    # The BEV grid of a store without a LiDAR teacher (with one, the teacher's grid is the store's):
    # {point_cloud_range: [6 floats], voxel_size: [3 floats], out_size_factor: int}; None: BevGrid's default.
    bev_grid: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        refuse_volatile(str(self.out))
        # "none" switches a teacher off (from the CLI or YAML)
        if str(self.lidar_teacher).lower() in ("none", ""):
            self.lidar_teacher = None
        if str(self.image_teacher).lower() in ("none", ""):
            self.image_teacher = None
        if int(self.radar_sweeps) < 0:
            raise UserInputError(f"--radar-sweeps: must be >= 0, got {self.radar_sweeps}")
        for name in ("batch_size", "shard_size", "depth_stride", "max_gt_boxes", "max_instances", "max_radar_points"):
            if int(getattr(self, name)) < 1:
                raise UserInputError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise UserInputError(f"--limit: must be >= 1, got {self.limit}")
        # only the name: a Dask client need not have the GPU its workers use (the Exporter checks)
        parse_device(self.device)
        if self.bev_grid is not None:
            try:
                BevGrid(**self.bev_grid)
            except (TypeError, ValueError) as e:
                raise UserInputError(f"bev_grid {self.bev_grid}: expected point_cloud_range, voxel_size, "
                                     f"out_size_factor ({e})") from None
        if self.lidar_teacher is None and self.image_teacher is None:
            log.warning("no teacher selected: the cache will hold only the index, calibration, GT and depth")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass
class StageTimes:
    """Seconds spent per stage, for the progress bar and bench/export.py."""

    read: float = 0.0
    lidar_teacher: float = 0.0
    image_teacher: float = 0.0
    targets: float = 0.0
    write: float = 0.0
    samples: int = 0

    def add(self, other: "StageTimes") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def split_samples(options: ExportOptions) -> NuScenesSamples | WaymoSamples:
    """The split's samples, through the dataset's tables (all of them in memory: open once per export)."""
    return open_split(options.dataroot, options.version, options.split, num_sweeps=options.num_sweeps,
                      num_radar_sweeps=options.radar_sweeps)


@dataclass(frozen=True)
class SplitSummary:
    """What the store's layout and identity need of the split: its size, its first sample (cameras,
    image size, radar) and the dataset part of the provenance. Computed once where the tables are open
    (the single process, or a Dask client), so that export workers never open them: they get this and,
    per task, the `SampleSubset` of their shard."""

    num_samples: int
    first: SampleInfo
    provenance: dict[str, Any]
    classes: ClassSetup = field(default_factory=ClassSetup)  # the dataset's detection classes and tasks

    @classmethod
    def of(cls, samples: NuScenesSamples | WaymoSamples, options: ExportOptions) -> "SplitSummary":
        n = min(len(samples), options.limit) if options.limit else len(samples)
        if n == 0:
            raise UserInputError(f"{options.dataroot}: split {options.split!r} of {options.version} has no samples")
        images = [path for i in range(n) for path in samples[i].calib.image_paths]
        provenance = {"version": options.version, "split": options.split, "limit": options.limit,
                      "num_sweeps": options.num_sweeps, "radar_sweeps": options.radar_sweeps,
                      "sample_tokens_sha256": _sha256_text(",".join(samples.sample_tokens[:n])),
                      # train refuses a dataroot whose images differ from these
                      "images_sha256": images_fingerprint(options.dataroot, images)}
        return cls(n, samples[0], provenance, getattr(samples, "class_setup", ClassSetup()))


class Exporter:
    """Teachers (and, in one process, the dataset's tables) for one export configuration; build once
    per process or Dask worker.

    Given a `split` (a Dask worker), it never opens the tables: `compute` then reads the samples it is
    handed. Without one it opens them on first use and summarises the split itself."""

    def __init__(self, options: ExportOptions, split: SplitSummary | None = None):
        self.options = options
        self._split = split
        self._tables_allowed = split is None
        self._samples: NuScenesSamples | None = None
        self._lidar: LidarTeacher | None = None
        self._image: ImageTeacher | None = None
        self._provenance: dict[str, Any] | None = None

    # -- lazily built, expensive parts ---------------------------------------------------------------
    @property
    def samples(self) -> NuScenesSamples:
        """All of the split's samples, through the tables (the single-process export)."""
        if self._samples is None:
            if not self._tables_allowed:
                raise RuntimeError("this Exporter was given its split summary and reads only the samples it is "
                                   "handed; it does not open the dataset's tables")
            self._samples = split_samples(self.options)
        return self._samples

    @property
    def split(self) -> SplitSummary:
        if self._split is None:
            self._split = SplitSummary.of(self.samples, self.options)
        return self._split

    @property
    def lidar_teacher(self) -> LidarTeacher | None:
        o = self.options
        if self._lidar is None and o.lidar_teacher:
            from teacher_export.teachers.registry import build_lidar_teacher

            torch_device(o.device)  # where the teacher runs (a worker's own GPU)
            extra = {"config": o.lidar_config} if o.lidar_config else {}
            self._lidar = build_lidar_teacher(o.lidar_teacher, checkpoint=o.lidar_checkpoint, device=o.device,
                                              random_init=o.random_init, **extra)
        return self._lidar

    @property
    def image_teacher(self) -> ImageTeacher | None:
        o = self.options
        if self._image is None and o.image_teacher:
            from teacher_export.teachers.registry import build_image_teacher

            torch_device(o.device)
            options = {"checkpoint": o.image_checkpoint, "random_init": o.random_init, "device": o.device,
                       "max_instances": o.max_instances, **o.image_options}
            if self.split.classes.classes != NUSCENES_CLASSES:
                if o.image_teacher != "maskrcnn":
                    raise UserInputError(f"--image-teacher {o.image_teacher}: it maps its classes to nuScenes', the "
                                         f"data's are {list(self.split.classes.classes)}; use the built-in maskrcnn "
                                         "(image_options.target_classes) or --image-teacher none")
                # the labels index the data's class table (the store's), not nuScenes'
                options["target_classes"] = list(self.split.classes.classes)
            self._image = build_image_teacher(o.image_teacher, **options)
        return self._image

    # -- what the store looks like -------------------------------------------------------------------
    def num_samples(self) -> int:
        return self.split.num_samples

    def store_config(self) -> StoreConfig:
        o = self.options
        first = self.split.first
        cams = tuple(c.name for c in first.cameras)
        if not is_waymo_version(o.version) and cams != CAMERA_NAMES:
            raise UserInputError(f"{o.dataroot}: sample {first.token} has cameras {cams}, expected {CAMERA_NAMES}")
        classes = self.split.classes
        if lidar_classes := (self.lidar_teacher.config.get("heatmap_classes") if self.lidar_teacher else None):
            if tuple(lidar_classes) != tuple(classes.classes):
                raise UserInputError(f"--lidar-teacher {o.lidar_teacher}: it predicts {list(lidar_classes)}, the data's "
                                     f"classes are {list(classes.classes)} (fit a teacher on this dataset, or "
                                     "--lidar-teacher none)")
        sizes = {(c.height, c.width) for c in first.cameras}
        if len(sizes) != 1:
            raise UserInputError(f"{o.dataroot}: cameras of sample {first.token} differ in size {sorted(sizes)}")
        groups = [g for g in GROUPS if g not in (LidarTeacherMaps.GROUP, ImageTeacherDetections.GROUP, RadarPoints.GROUP)]
        lidar = self.lidar_teacher
        if lidar is not None:
            groups.append(LidarTeacherMaps.GROUP)
        if o.image_teacher:
            groups.append(ImageTeacherDetections.GROUP)
        if o.radar_sweeps and first.radar_sweeps:
            groups.append(RadarPoints.GROUP)
        elif o.radar_sweeps:
            log.info("%s: no radar data in sample %s; the cache gets no radar group", o.dataroot, first.token)
        try:
            return StoreConfig(
                num_samples=self.num_samples(), grid=self._grid(), classes=classes,
                cameras=cams,
                image_size=sizes.pop(), depth_stride=o.depth_stride,
                bev_channels=lidar.bev_channels if lidar else 1, bev_quantization=o.bev_quantization,
                max_gt_boxes=o.max_gt_boxes, max_instances=o.max_instances, shard_size=o.shard_size,
                groups=tuple(groups),
                # the teacher says how its regression map encodes boxes; the student checks it (X-OD)
                regression=lidar.regression_encoding if lidar else RegressionEncoding(),
                radar_sweeps=max(o.radar_sweeps, 1), max_radar_points=o.max_radar_points)
        except ValueError as e:
            raise UserInputError(f"export options: {e}") from None

    def _grid(self) -> BevGrid:
        chosen = BevGrid(**self.options.bev_grid) if self.options.bev_grid else None
        if self.lidar_teacher is None:
            return chosen or BevGrid()
        if chosen is not None and chosen != self.lidar_teacher.grid:
            raise UserInputError(f"bev_grid {self.options.bev_grid}: the LiDAR teacher's grid is "
                                 f"{self.lidar_teacher.grid.to_json()}; a store with a teacher takes its grid")
        return self.lidar_teacher.grid

    def provenance(self) -> dict[str, Any]:
        """Teacher and dataset identity: a store is only ever filled by one of these. Computed once
        (every shard task of a worker opens a writer with it)."""
        if self._provenance is None:
            self._provenance = self._as_stored(self._describe())
        return self._provenance

    def _describe(self) -> dict[str, Any]:
        o = self.options
        prov: dict[str, Any] = {"dataset": dict(self.split.provenance)}
        if self.lidar_teacher is not None:
            prov["lidar_teacher"] = {"name": o.lidar_teacher, "checkpoint_sha256": _sha256_or_none(o.lidar_checkpoint),
                                     "config": _without_paths(self.lidar_teacher.config)}
        if self.image_teacher is not None:
            prov["image_teacher"] = {"name": o.image_teacher, "checkpoint_sha256": _sha256_or_none(o.image_checkpoint),
                                     "config": _without_paths(self.image_teacher.config)}
        return prov

    def open_writer(self, create: bool = True, rows: range | None = None) -> CacheWriter:
        return CacheWriter(self.options.out, self.store_config(), self.provenance(),
                           storage_options=self.options.storage_options, create=create, rows=rows)

    def _as_stored(self, ours: dict[str, Any]) -> dict[str, Any]:
        """Ours, or an existing store's that differs from ours only in the teachers' checkpoint paths,
        which earlier stores recorded (a path, relative or absolute, is not an identity: the checkpoint's
        sha256 is)."""
        from cache_schema.store import open_root, read_meta

        try:
            stored = read_meta(open_root(self.options.out, "r", self.options.storage_options), self.options.out).provenance
        except UserInputError:
            return ours
        as_now = {k: {**v, "config": _without_paths(v["config"])} if isinstance(v, dict) and "config" in v else v
                  for k, v in stored.items()}
        return stored if as_now == _without_new_unset_options(ours, as_now) else ours

    # -- the work ------------------------------------------------------------------------------------
    def compute(self, indices: Iterable[int], config: StoreConfig, times: StageTimes | None = None,
                samples: SampleSubset | None = None) -> Iterator[tuple[int, CacheSample]]:
        """Run the teachers on `indices` in batches of `batch_size`; yield (index, cache sample).

        `samples` holds those indices' samples (a Dask task's shard); default: the split's, through
        the tables."""
        times = times if times is not None else StageTimes()
        source = samples if samples is not None else self.samples
        indices = list(indices)
        batch = self.options.batch_size
        for start in range(0, len(indices), batch):
            chunk = indices[start:start + batch]
            t0 = time.perf_counter()
            infos = [source[i] for i in chunk]
            points = [source.load_points(info) for info in infos]
            images = [[read_rgb(Path(self.options.dataroot) / path, (cam.height, cam.width))
                       for path, cam in zip(info.calib.image_paths, info.cameras)] for info in infos] \
                if self.image_teacher else None
            t1 = time.perf_counter()
            lidar_out = self.lidar_teacher(points, decode=False) if self.lidar_teacher else None
            t2 = time.perf_counter()
            image_out = self.image_teacher([im for per in images for im in per]) if images else None
            t3 = time.perf_counter()
            for b, (index, info) in enumerate(zip(chunk, infos)):
                lidar = image = radar = None
                if lidar_out is not None:
                    out = lidar_out[b]
                    lidar = LidarTeacherMaps(out.bev_features, out.heatmaps, out.regression,
                                             *feature_sums(out.bev_features))
                if image_out is not None:
                    cams = len(info.cameras)
                    padded = pad_instances(image_out[b * cams:(b + 1) * cams], config.max_instances)
                    image = ImageTeacherDetections(padded.boxes, padded.labels, padded.scores,
                                                   np.rint(np.clip(padded.masks, 0, 1) * 255).astype(np.uint8))
                if RadarPoints.GROUP in config.groups:
                    radar = _radar_points(info, source.load_radar(info), config)
                yield index, _index_and_targets(info, points[b], config, lidar, image, radar)
            t4 = time.perf_counter()
            times.read += t1 - t0
            times.lidar_teacher += t2 - t1
            times.image_teacher += t3 - t2
            times.targets += t4 - t3
            times.samples += len(chunk)


def _index_and_targets(info: SampleInfo, points: np.ndarray, config: StoreConfig,
                       lidar: LidarTeacherMaps | None, image: ImageTeacherDetections | None,
                       radar: RadarPoints | None) -> CacheSample:
    """A cache sample: index, calibration, GT boxes and LiDAR depth targets beside the teachers' outputs."""
    # Training GT (NuScenesSamples' "training" filter) whose centre is on the BEV grid, as mmdet3d's
    # ObjectRangeFilter keeps; the devkit's per-class evaluation ranges do not apply to training.
    on_grid = config.grid.contains(info.gt_boxes[:, 0], info.gt_boxes[:, 1])
    gt_boxes, gt_labels = info.gt_boxes[on_grid], info.gt_labels[on_grid]
    n = len(gt_boxes)
    if n > config.max_gt_boxes:
        raise UserInputError(f"sample {info.token} has {n} GT boxes; raise --max-gt-boxes (now {config.max_gt_boxes})")
    boxes = np.zeros((config.max_gt_boxes, 9), np.float32)
    labels = np.full(config.max_gt_boxes, -1, np.int16)
    boxes[:n] = gt_boxes
    labels[:n] = gt_labels
    # Depth supervision uses the key frame only: swept points are smeared by object motion.
    key_points = points[points[:, 4] == 0] if points.shape[1] > 4 else points
    calib = info.calib
    lidar_to_cams = np.stack([calib.lidar_to_camera(i) for i in range(calib.num_cameras)])
    depth = depth_images(key_points[:, :3], lidar_to_cams, calib.cam_intrinsics, config.image_size,
                         config.depth_stride)
    for i, cam in enumerate(info.cameras):
        if cam.valid_height is not None:  # below it the image is padding: no pixel, so no depth target
            depth[i, -(-cam.valid_height // config.depth_stride):] = 0
    return CacheSample(SampleMeta(info.token, info.scene_token, np.int64(info.timestamp), info.prev_token or info.token),
                       calib, GroundTruth(boxes, labels, np.int32(n)), DepthTargets(depth), lidar, image, radar)


def _radar_points(info: SampleInfo, points: np.ndarray, config: StoreConfig) -> RadarPoints:
    if len(points) > config.max_radar_points:
        raise UserInputError(f"sample {info.token} has {len(points)} radar points; raise --max-radar-points "
                             f"(now {config.max_radar_points})")
    padded = np.zeros((config.max_radar_points, points.shape[1]), np.float32)
    padded[:len(points)] = points
    return RadarPoints(padded, np.int32(len(points)))


def _without_paths(teacher_config: dict[str, Any]) -> dict[str, Any]:
    """A teacher's config as the store's identity records it: without where its checkpoint file was
    (the same weights from another folder, or through --cluster's absolute paths, are the same teacher;
    the checkpoint's sha256 is recorded beside it)."""
    return {k: v for k, v in teacher_config.items() if k != "checkpoint"}


def _without_new_unset_options(ours: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """Ours without the teacher options a stored config does not know that are unset (None): an option
    added to a teacher later (e.g. the Mask R-CNN's `flavor`) whose unset value runs the teacher as before
    must not make an existing store look like another teacher's."""
    out = dict(ours)
    for key, value in ours.items():
        theirs = stored.get(key)
        if isinstance(value, dict) and isinstance(theirs, dict) and isinstance(theirs.get("config"), dict):
            config = {k: v for k, v in value["config"].items() if k in theirs["config"] or v is not None}
            out[key] = {**value, "config": config}
    return out


def _sha256_or_none(path: str | None) -> str | None:
    return file_sha256(path) if path else None


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ExportResult:
    out: str
    num_samples: int
    written: int
    skipped: int
    seconds: float
    times: StageTimes

    def summary(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else float("nan")
        return (f"{self.out}: {self.written} samples written, {self.skipped} already done, "
                f"{self.num_samples} in the store ({rate:.2f} samples/s)")


def export(options: ExportOptions, *, progress: bool = True, exporter: Exporter | None = None) -> ExportResult:
    """Export a split into the cache at `options.out`; resumes a store made with the same options. Holds
    the store's lease (`cache_schema.lease`) from before the store is created until the export ends: a
    second writer of the same store is refused (`StoreLeased`), naming this one."""
    with Lease(options.out, "store", options.storage_options, label=f"--out {options.out}"):
        return _export(options, progress, exporter or Exporter(options))


def _export(options: ExportOptions, progress: bool, exporter: Exporter) -> ExportResult:
    config = exporter.store_config()
    writer = exporter.open_writer()
    todo = [i for i in range(config.num_samples) if not writer.is_done(i)]
    times = StageTimes()
    started = time.perf_counter()
    bar = None
    if progress and todo:
        from cache_schema.progress import progress as progress_bar

        bar = progress_bar(total=len(todo), desc="export", unit="sample", smoothing=0.1)
    try:
        export_indices(exporter, writer, todo, times, on_sample=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    if todo:
        writer.record_run(run_record(len(todo), seconds, options.device))
    return ExportResult(options.out, config.num_samples, len(todo), config.num_samples - len(todo), seconds, times)


def forget_bad_samples(options: ExportOptions, *, progress: bool = True) -> list[int]:
    """`export --repair`: read every chunk of the store (`validate`), mark the samples it names as
    corrupt or missing not-done, and return their indices; the export that follows writes them (and
    the unfinished ones) again. A store that does not exist yet has nothing to repair."""
    from cache_schema.validate import validate

    with Lease(options.out, "store", options.storage_options, label=f"--out {options.out}"):
        try:
            report = validate(options.out, storage_options=options.storage_options, progress=progress)
        except UserInputError:
            return []
        bad = sorted({p.index for p in report.corrupt + report.missing})
        if bad:
            forget_samples(options.out, bad, options.storage_options)
            log.warning("%s: %d corrupt or missing sample(s) will be exported again: %s", options.out, len(bad),
                        ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else ""))
        return bad


def export_indices(exporter: Exporter, writer: CacheWriter, indices: list[int], times: StageTimes,
                   on_sample: Callable[[int], Any] | None = None, samples: SampleSubset | None = None) -> None:
    """Run the teachers on `indices` and write them through `writer`, which is closed at the end.

    The one loop behind `export()` and the Dask shard tasks of `pipelines`. On an exception the writer
    still writes the shards that are complete (and partial ones, whose missing samples stay not-done).
    `on_sample(1)` is called after each sample is handed to the writer (a progress bar's `update`);
    `samples`, if given, holds the samples of `indices` (see `Exporter.compute`)."""
    with writer:
        for index, sample in exporter.compute(indices, writer.config, times, samples):
            t = time.perf_counter()
            writer.write_sample(index, sample)
            times.write += time.perf_counter() - t
            if on_sample is not None:
                on_sample(1)


def run_record(written: int, seconds: float, device: str, **extra: Any) -> dict[str, Any]:
    """The entry `CacheWriter.record_run` appends to the store attributes after an export run."""
    return {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "written": written, "seconds": round(seconds, 1), "x3kd": software_version(), "device": device,
            **extra}


def options_from(config_file: str | None, overrides: dict[str, Any]) -> ExportOptions:
    """ExportOptions from an optional YAML file, with CLI values (those not None) taking precedence."""
    values: dict[str, Any] = {}
    if config_file:
        import yaml

        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except FileNotFoundError:
            raise UserInputError(f"{config_file}: config file not found") from None
        except yaml.YAMLError as e:
            raise UserInputError(f"{config_file}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise UserInputError(f"{config_file}: expected a mapping of export options")
        unknown = sorted(set(loaded) - ExportOptions.field_names())
        if unknown:
            raise UserInputError(f"{config_file}: unknown export options {unknown}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    missing = [k for k in ("dataroot", "version", "split", "out") if not values.get(k)]
    if missing:
        raise UserInputError(f"missing required option(s): {', '.join('--' + m for m in missing)}")
    return ExportOptions(**values)
