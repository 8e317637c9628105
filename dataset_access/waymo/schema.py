"""The Waymo Open Dataset v2 Parquet layout, as the dataset defines it, in pyarrow terms (no TensorFlow).

A v2 dataset is `{root}/{split}/{component}/{segment}.parquet`: one file per component and segment, one row
per (frame, sensor) or (frame, object), columns named `key.<field>` for the row's key and
`[<ComponentClass>].<path>` for its values (nested dataclass fields joined by dots). The schemas below are
those of `waymo_open_dataset.v2` 1.6 for the components x3kd reads; the test suite holds them to a
fixture dumped from the official package (tests/dataset_access/waymo/fixtures).
"""
from __future__ import annotations

import pyarrow as pa

SPLITS: tuple[str, ...] = ("training", "validation", "testing")

# Enum values of waymo_open_dataset.v2 (camera_image.CameraName, lidar.LaserName, box.BoxType).
CAMERA_NAMES: dict[int, str] = {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT"}
LASER_NAMES: dict[int, str] = {1: "TOP", 2: "FRONT", 3: "SIDE_LEFT", 4: "SIDE_RIGHT", 5: "REAR"}
BOX_TYPES: dict[int, str] = {0: "unknown", 1: "vehicle", 2: "pedestrian", 3: "sign", 4: "cyclist"}
LEVEL_1, LEVEL_2 = 1, 2
TOP_LASER = 1

# The detection classes x3kd trains and scores on Waymo, in the order of the store's class table
# (Waymo's 3D detection challenge scores vehicle, pedestrian and cyclist; sign is labelled too).
WAYMO_CLASSES: tuple[str, ...] = ("vehicle", "pedestrian", "cyclist", "sign")

KEY_SEGMENT = "key.segment_context_name"
KEY_TIMESTAMP = "key.frame_timestamp_micros"
KEY_CAMERA = "key.camera_name"
KEY_LASER = "key.laser_name"
KEY_OBJECT = "key.laser_object_id"

_F64, _F32, _I8, _I32, _I64 = pa.float64(), pa.float32(), pa.int8(), pa.int32(), pa.int64()
_TRANSFORM = pa.list_(pa.float64(), 16)  # a row-major 4x4 matrix


def _vec(prefix: str, kind: pa.DataType) -> list[tuple[str, pa.DataType]]:
    return [(f"{prefix}.{axis}", kind) for axis in "xyz"]


def _box(prefix: str) -> list[tuple[str, pa.DataType]]:
    return [*_vec(f"{prefix}.center", _F64), *_vec(f"{prefix}.size", _F64), (f"{prefix}.heading", _F64)]


def _component(name: str, keys: list[str], values: list[tuple[str, pa.DataType]]) -> pa.Schema:
    key_types = {KEY_SEGMENT: pa.string(), KEY_TIMESTAMP: _I64, KEY_CAMERA: _I8, KEY_LASER: _I8,
                 KEY_OBJECT: pa.string()}
    return pa.schema([(k, key_types[k]) for k in keys] + [(f"[{name}].{path}", t) for path, t in values])


def _range_image(prefix: str) -> list[tuple[str, pa.DataType]]:
    return [(f"{prefix}.values", pa.list_(_F32)), (f"{prefix}.shape", pa.list_(_I32, 3))]


_FRAME = [KEY_SEGMENT, KEY_TIMESTAMP]
SCHEMAS: dict[str, pa.Schema] = {
    "camera_image": _component("CameraImageComponent", [*_FRAME, KEY_CAMERA], [
        ("image", pa.binary()), ("pose.transform", _TRANSFORM),
        *_vec("velocity.linear_velocity", _F32), *_vec("velocity.angular_velocity", _F64),
        ("pose_timestamp", _F64), ("rolling_shutter_params.shutter", _F64),
        ("rolling_shutter_params.camera_trigger_time", _F64),
        ("rolling_shutter_params.camera_readout_done_time", _F64)]),
    "camera_calibration": _component("CameraCalibrationComponent", [KEY_SEGMENT, KEY_CAMERA], [
        *[(f"intrinsic.{p}", _F64) for p in ("f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3")],
        ("extrinsic.transform", _TRANSFORM), ("width", _I32), ("height", _I32), ("rolling_shutter_direction", _I8)]),
    "lidar": _component("LiDARComponent", [*_FRAME, KEY_LASER],
                        [*_range_image("range_image_return1"), *_range_image("range_image_return2")]),
    "lidar_calibration": _component("LiDARCalibrationComponent", [KEY_SEGMENT, KEY_LASER], [
        ("extrinsic.transform", _TRANSFORM), ("beam_inclination.min", _F64), ("beam_inclination.max", _F64),
        ("beam_inclination.values", pa.list_(_F64))]),
    "lidar_pose": _component("LiDARPoseComponent", [*_FRAME, KEY_LASER], _range_image("range_image_return1")),
    "vehicle_pose": _component("VehiclePoseComponent", _FRAME, [("world_from_vehicle.transform", _TRANSFORM)]),
    "lidar_box": _component("LiDARBoxComponent", [*_FRAME, KEY_OBJECT], [
        *_box("box"), ("type", _I8), ("num_lidar_points_in_box", _I64), ("num_top_lidar_points_in_box", _I64),
        *_vec("speed", _F64), *_vec("acceleration", _F64), ("difficulty_level.detection", _I8),
        ("difficulty_level.tracking", _I8)]),
    "lidar_camera_synced_box": _component("LiDARCameraSyncedBoxComponent", [*_FRAME, KEY_OBJECT], [
        ("most_visible_camera_name", _I8), *_box("camera_synced_box")]),
}
# The components a segment must have for x3kd to export it (camera-synced boxes are optional: only the
# camera-only track's labels carry them).
REQUIRED_COMPONENTS: tuple[str, ...] = ("camera_image", "camera_calibration", "lidar", "lidar_calibration",
                                        "lidar_pose", "vehicle_pose", "lidar_box")


def column(component: str, path: str) -> str:
    """The full column name of value `path` (e.g. 'range_image_return1.values') of `component`."""
    prefix = SCHEMAS[component].names[-1].split("].")[0] + "]"
    name = f"{prefix}.{path}"
    if name not in SCHEMAS[component].names:
        raise KeyError(f"{component} has no column {name!r}")
    return name
