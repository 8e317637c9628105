"""The store layout, declared once.

Every array of an x3kd cache is listed in `ARRAYS` as an `ArraySpec`: where it lives, its per-sample
shape as a function of the store's `StoreConfig`, its dtype on disk, how dense values are reduced
(`quantization`) and its fill value. The writer, the reader and `validate` are driven by this
declaration; no other module spells out array names or shapes.

On disk every array has a leading sample axis N, chunks of one sample, and shards of
`StoreConfig.shard_size` samples (Zarr v3 sharding codec). Inner chunks are encoded
bytes → zstd(level 1) → crc32c, so every chunk is checksummed. The `meta/done` flags are not sharded:
they are chunked by `shard_size`, so the writer that owns a shard also owns the one chunk holding its
flags, and writes them last.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from .grid import BevGrid, ClassSetup

# major.minor: readers refuse an unknown major; a minor adds what older stores are read as having by
# default. 1.1: StoreConfig.regression (1.0 stores were all written in REGRESSION_ENCODING), and
# lidar_teacher/bev_features_{sum,sqsum} (1.0 stores have no feature statistics). 1.2: the optional
# `radar` group and StoreConfig.radar_sweeps / max_radar_points (older stores have no radar). 1.3:
# meta/prev_token, each sample's previous key frame (older stores have none: a two-key-frame student
# refuses them).
SCHEMA_VERSION = "1.3"

CAMERA_NAMES: tuple[str, ...] = (
    "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT",
)
# nuScenes' five radars, in the order the cache and the radar student list them.
RADAR_NAMES: tuple[str, ...] = (
    "RADAR_FRONT", "RADAR_FRONT_LEFT", "RADAR_FRONT_RIGHT", "RADAR_BACK_LEFT", "RADAR_BACK_RIGHT",
)
# Per radar point, in the LiDAR frame of the sample: position, radar cross-section (dBsm), the ego-motion
# compensated Doppler velocity (m/s, rotated into the LiDAR frame) and the sweep's age (s).
RADAR_POINT_FEATURES: tuple[str, ...] = ("x", "y", "z", "rcs", "vx_comp", "vy_comp", "time_lag")
GROUPS: tuple[str, ...] = ("meta", "calib", "gt", "depth", "lidar_teacher", "image_teacher", "radar")
REQUIRED_GROUPS: tuple[str, ...] = ("meta", "calib", "gt")
QUANTIZATIONS: tuple[str, ...] = ("float16", "int8")
# The regression map's channels, in order, grouped by the CenterHead output that predicts them: the one
# statement of the 10-channel layout (the head's outputs, the cache's regression map, the det loss and
# X-OD all follow it; see detection.centerpoint_coder). The LiDAR teacher merges the groups of its
# task heads into one map per sample.
REGRESSION_HEADS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("reg", ("reg_x", "reg_y")),
    ("height", ("height",)),
    ("dim", ("dim_l", "dim_w", "dim_h")),
    ("rot", ("rot_sin", "rot_cos")),
    ("vel", ("vel_x", "vel_y")),
)
REGRESSION_CHANNELS: tuple[str, ...] = tuple(c for _, channels in REGRESSION_HEADS for c in channels)

@dataclass(frozen=True)
class RegressionEncoding:
    """How the teacher's 10-channel regression map encodes a box, part of the store contract: a teacher
    with another encoding would otherwise corrupt X-OD silently. Written by the export from the teacher,
    checked by the student before training."""

    channels: tuple[str, ...] = REGRESSION_CHANNELS
    offset: str = "cell_fraction"      # reg_x/y: centre minus the cell's corner, in cells
    z: str = "gravity_centre"          # height: the box's gravity centre z (not the bottom)
    dims: str = "log"                  # dim_l/w/h: log of metres (mmdet3d norm_bbox=True), or "metres"
    rotation: str = "sin_cos"          # rot_sin, rot_cos of the yaw
    velocity: str = "m_per_s_lidar"    # vel_x/y: m/s in the sample's LiDAR frame

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))

    def to_json(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "RegressionEncoding":
        return cls(**d)

    def difference(self, other: "RegressionEncoding") -> str:
        """'field: a != b' for the first field that differs, '' when equal."""
        for key in ("channels", "offset", "z", "dims", "rotation", "velocity"):
            if getattr(self, key) != getattr(other, key):
                return f"{key}: {getattr(self, key)!r} != {getattr(other, key)!r}"
        return ""


REGRESSION_ENCODING = RegressionEncoding()
TOKEN_BYTES = 64
PATH_BYTES = 192


@dataclass(frozen=True)
class StoreConfig:
    """Everything that fixes the shapes and encodings of a store. Two stores with equal configs have
    identical layouts; reopening a store with a different config is an error."""

    num_samples: int
    grid: BevGrid = field(default_factory=BevGrid)
    classes: ClassSetup = field(default_factory=ClassSetup)
    cameras: tuple[str, ...] = CAMERA_NAMES
    image_size: tuple[int, int] = (900, 1600)  # (H, W) of the original camera images
    depth_stride: int = 4  # depth targets are kept at image_size // depth_stride (floor)
    bev_channels: int = 384  # LiDAR teacher's BEV feature channels
    bev_quantization: str = "int8"
    max_gt_boxes: int = 256
    max_instances: int = 32  # image-teacher detections kept per camera
    mask_size: int = 28
    shard_size: int = 16
    groups: tuple[str, ...] = GROUPS
    regression: RegressionEncoding = field(default_factory=RegressionEncoding)
    radar_sweeps: int = 6  # scans per radar (key frame included) merged into radar/points
    max_radar_points: int = 4096

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "groups", tuple(g for g in GROUPS if g in set(self.groups)))
        problems = []
        if self.num_samples < 1:
            problems.append(f"num_samples must be >= 1, got {self.num_samples}")
        if self.shard_size < 1:
            problems.append(f"shard_size must be >= 1, got {self.shard_size}")
        if self.bev_quantization not in QUANTIZATIONS:
            problems.append(f"bev_quantization must be one of {QUANTIZATIONS}, got {self.bev_quantization!r}")
        missing = [g for g in REQUIRED_GROUPS if g not in self.groups]
        if missing:
            problems.append(f"groups must include {missing}")
        if self.radar_sweeps < 1 or self.max_radar_points < 1:
            problems.append(f"radar_sweeps and max_radar_points must be >= 1, got {self.radar_sweeps}, "
                            f"{self.max_radar_points}")
        if self.depth_stride < 1 or min(self.image_size) < self.depth_stride:
            problems.append(f"depth_stride {self.depth_stride} does not fit image_size {self.image_size}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)

    @property
    def num_classes(self) -> int:
        return len(self.classes.classes)

    @property
    def depth_size(self) -> tuple[int, int]:
        return (self.image_size[0] // self.depth_stride, self.image_size[1] // self.depth_stride)

    def to_json(self) -> dict:
        d = asdict(self)
        d["grid"] = self.grid.to_json()
        d["classes"] = self.classes.to_json()
        d["regression"] = self.regression.to_json()
        for k in ("cameras", "image_size", "groups"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_json(cls, d: dict) -> "StoreConfig":
        d = dict(d)
        d["grid"] = BevGrid.from_json(d["grid"])
        d["classes"] = ClassSetup.from_json(d["classes"])
        d["cameras"] = tuple(d["cameras"])
        d["image_size"] = tuple(d["image_size"])
        d["groups"] = tuple(d["groups"])
        # schema 1.0 stores did not record it: every 1.0 export wrote the default encoding
        d["regression"] = RegressionEncoding.from_json(d["regression"]) if "regression" in d else RegressionEncoding()
        return cls(**d)



Shape = Callable[[StoreConfig], tuple[int, ...]]


@dataclass(frozen=True)
class ArraySpec:
    """One array of the store. `shape` is the per-sample shape (without the leading N)."""

    group: str
    name: str
    shape: Shape
    dtype: str  # the dtype handed to and returned by the writer/reader for non-dense arrays
    fill_value: float | int = 0
    # "dense": a float map that is reduced on disk (float16, or int8 with a per-sample per-channel affine
    # kept in the companion array `<name>_affine`); decoded to float32. "text": fixed-width UTF-8 strings
    # held as uint8 (any Zarr reader can open them), decoded to str. "plain": stored as `dtype` as is.
    kind: str = "plain"
    # Small per-sample values: `CacheReader.column` may load them for all samples at once (statistics,
    # indexes); samples are read chunk by chunk through the direct shard path like the large maps.
    small: bool = True
    doc: str = ""
    # Zarr v3 dimension_names of the per-sample axes (the leading axis is "sample"), so that xarray and
    # other readers see named dimensions. A name means one size within its group.
    dims: tuple[str, ...] = ()
    since: str = "1.0"  # the schema version that added the array; older stores do not have it

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"

    def __reduce__(self):
        # Specs are declared once, here; pickle them by key (their shape rules are lambdas).
        return (spec_by_key, (self.key,))

    def sample_shape(self, config: StoreConfig) -> tuple[int, ...]:
        return tuple(int(s) for s in self.shape(config))

    def disk_dtype(self, config: StoreConfig) -> str:
        if self.kind == "dense":
            return self.quantization(config)
        if self.kind == "text":
            return "uint8"
        return self.dtype

    def quantization(self, config: StoreConfig) -> str | None:
        if self.kind != "dense":
            return None
        return config.bev_quantization if self.key == "lidar_teacher/bev_features" else "float16"


def _bev(channels: Callable[[StoreConfig], int]) -> Shape:
    return lambda c: (channels(c), *c.grid.shape)


ARRAYS: tuple[ArraySpec, ...] = (
    ArraySpec("meta", "token", lambda c: (TOKEN_BYTES,), "str", kind="text", doc="nuScenes sample token",
              dims=("token_byte",)),
    ArraySpec("meta", "scene_token", lambda c: (TOKEN_BYTES,), "str", kind="text", dims=("token_byte",)),
    ArraySpec("meta", "timestamp", lambda c: (), "int64", doc="microseconds, as in nuScenes"),
    ArraySpec("meta", "prev_token", lambda c: (TOKEN_BYTES,), "str", kind="text", since="1.3", dims=("token_byte",),
              doc="the previous key frame of the same scene (the sample itself for a scene's first): "
                  "where a two-key-frame student finds its second frame"),
    ArraySpec("calib", "image_paths", lambda c: (c.num_cameras, PATH_BYTES), "str", kind="text",
              doc="camera JPEGs relative to the dataroot, in StoreConfig.cameras order", dims=("camera", "path_byte")),
    ArraySpec("calib", "cam_intrinsics", lambda c: (c.num_cameras, 3, 3), "float32", dims=("camera", "row3", "col3")),
    ArraySpec("calib", "cam_to_ego", lambda c: (c.num_cameras, 4, 4), "float64",
              doc="camera -> ego at the camera's timestamp", dims=("camera", "row4", "col4")),
    ArraySpec("calib", "cam_ego_pose", lambda c: (c.num_cameras, 4, 4), "float64",
              doc="ego -> global at each camera's timestamp", dims=("camera", "row4", "col4")),
    ArraySpec("calib", "lidar_to_ego", lambda c: (4, 4), "float64", dims=("row4", "col4")),
    ArraySpec("calib", "ego_pose", lambda c: (4, 4), "float64", doc="ego -> global at the LiDAR timestamp",
              dims=("row4", "col4")),
    ArraySpec("gt", "boxes", lambda c: (c.max_gt_boxes, 9), "float32",
              doc="cache_schema.boxes convention, LiDAR frame, zero-padded", dims=("box", "box_field")),
    ArraySpec("gt", "labels", lambda c: (c.max_gt_boxes,), "int16", fill_value=-1,
              doc="class index into StoreConfig.classes, -1 = padding", dims=("box",)),
    ArraySpec("gt", "count", lambda c: (), "int32"),
    ArraySpec("depth", "depth", lambda c: (c.num_cameras, *c.depth_size), "float16", small=False,
              doc="min LiDAR depth (m) per depth_stride cell of each camera image, 0 = no point",
              dims=("camera", "depth_y", "depth_x")),
    ArraySpec("lidar_teacher", "bev_features", _bev(lambda c: c.bev_channels), "float32", kind="dense",
              small=False, doc="teacher neck output on the BEV grid", dims=("feature", "y", "x")),
    ArraySpec("lidar_teacher", "heatmaps", _bev(lambda c: c.num_classes), "float32", kind="dense",
              small=False, doc="sigmoid class heatmaps in StoreConfig.classes order", dims=("class", "y", "x")),
    ArraySpec("lidar_teacher", "regression", _bev(lambda c: len(REGRESSION_CHANNELS)), "float32",
              kind="dense", small=False, doc="channels REGRESSION_CHANNELS", dims=("reg_channel", "y", "x")),
    ArraySpec("lidar_teacher", "bev_features_sum", lambda c: (c.bev_channels,), "float64", since="1.1",
              dims=("feature",), doc="per channel, the sum over the grid of the teacher BEV features (X-FD "
                                     "standardisation: the student aggregates these over its samples)"),
    ArraySpec("lidar_teacher", "bev_features_sqsum", lambda c: (c.bev_channels,), "float64", since="1.1",
              dims=("feature",), doc="per channel, the sum over the grid of the squared teacher BEV features"),
    ArraySpec("image_teacher", "boxes", lambda c: (c.num_cameras, c.max_instances, 4), "float32",
              small=False, doc="xyxy in original image pixels, zero-padded", dims=("camera", "instance", "xyxy")),
    ArraySpec("image_teacher", "labels", lambda c: (c.num_cameras, c.max_instances), "int16", fill_value=-1,
              small=False, dims=("camera", "instance")),
    ArraySpec("image_teacher", "scores", lambda c: (c.num_cameras, c.max_instances), "float32", small=False,
              dims=("camera", "instance")),
    ArraySpec("image_teacher", "masks", lambda c: (c.num_cameras, c.max_instances, c.mask_size, c.mask_size),
              "uint8", small=False, doc="28x28 mask probabilities x 255, pasted into boxes at load time",
              dims=("camera", "instance", "mask_y", "mask_x")),
)
ARRAYS += (
    ArraySpec("radar", "points", lambda c: (c.max_radar_points, len(RADAR_POINT_FEATURES)), "float32", small=False,
              since="1.2", dims=("radar_point", "radar_feature"),
              doc="the five radars' last radar_sweeps scans in the LiDAR frame, columns RADAR_POINT_FEATURES, "
                  "zero-padded after radar/count rows"),
    ArraySpec("radar", "count", lambda c: (), "int32", since="1.2", doc="rows of radar/points that are points"),
)
DONE = ArraySpec("meta", "done", lambda c: (), "uint8", doc="1 once every array of the sample is written")


def affine_key(spec: ArraySpec) -> str:
    """Companion array of an int8 map: per sample, (2, C) = (scale, offset) per channel."""
    return f"{spec.key}_affine"


def arrays_for(config: StoreConfig, groups: tuple[str, ...] | None = None, schema: str = SCHEMA_VERSION
               ) -> list[ArraySpec]:
    """The data arrays of a store with this config and schema version (without `meta/done`),
    optionally only some groups."""
    wanted = set(config.groups if groups is None else groups)
    return [a for a in ARRAYS if a.group in wanted and a.group in config.groups
            and _minor(a.since) <= _minor(schema)]


def _minor(version: str) -> int:
    return int(str(version).split(".")[1])


def spec_by_key(key: str) -> ArraySpec:
    for a in (*ARRAYS, DONE):
        if a.key == key:
            return a
    raise KeyError(key)


def shard_of(index: int, config: StoreConfig) -> int:
    return index // config.shard_size


def shard_range(shard: int, config: StoreConfig) -> range:
    start = shard * config.shard_size
    return range(start, min(start + config.shard_size, config.num_samples))


def num_shards(config: StoreConfig) -> int:
    return -(-config.num_samples // config.shard_size)
