"""The synthetic world written as a Waymo Open Dataset v2 split (Parquet, the dataset's own schema).

The same worlds as the nuScenes-format generator (`world.sample_world`, `camera.render_camera`) seen
through a Waymo-like rig: five cameras in Waymo's layout and aspect ratios (front 1920x1280, sides
1920x886, scaled down), a 64-beam TOP LiDAR written as range images of two returns with its per-pixel
vehicle pose (the car moves during the 0.1 s spin, so the columns are cast from where the car was when
each fired), frames at 10 Hz, LiDAR boxes with Waymo's types and difficulty, and the camera-synced boxes
of the camera-only track. Objects without a Waymo type (barriers, pushable objects) stay unlabelled and
their LiDAR points carry the no-label-zone flag. Output is a pure function of the arguments.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from cache_schema.errors import UserInputError
from cache_schema.frames import make_transform, rotation_z
from dataset_access.synthetic.camera import render_camera
from dataset_access.synthetic.lidar import points_in_boxes, ray_box_distances
from dataset_access.synthetic.output import building
from dataset_access.synthetic.world import CLASS_MIXES, EGO_RADIUS, boxes_at, sample_world
from dataset_access.waymo.range_image import beam_inclinations, range_image_to_points, rotation_to_euler
from dataset_access.waymo.reader import WAYMO_CAMERA_FROM_CV
from dataset_access.waymo.schema import (KEY_CAMERA, KEY_LASER, KEY_OBJECT, KEY_SEGMENT, KEY_TIMESTAMP, LEVEL_1,
                                         LEVEL_2, SCHEMAS, TOP_LASER)

log = logging.getLogger(__name__)

FRAME_INTERVAL_US = 100_000  # Waymo frames come at 10 Hz
SPIN_S = 0.1  # one TOP revolution per frame
SPIN_SLICES = 16  # the spin is cast in this many time slices (each with its own car pose and object places)
FIRST_TIMESTAMP_US = 1_557_000_000_000_000
MAX_RANGE = 75.0
RANGE_NOISE_M = 0.02
DROPOUT = 0.03
SECOND_RETURN = 0.15  # share of object hits whose beam also returns from what lies behind
FEW_POINTS = 5  # Waymo: a box with at most this many LiDAR points is LEVEL_2

# (id, name, yaw in the vehicle frame, mount (x, y, z), full-size (width, height), focal, principal point,
# exposure delay after the frame time in s). Rounded from the v1.4 calibrations; the front camera leads.
CAMERAS = (
    (1, "FRONT", 0.0, (1.54, -0.02, 2.12), (1920, 1280), 2055.0, (950.0, 640.0), 0.0),
    (2, "FRONT_LEFT", np.deg2rad(45.0), (1.50, 0.09, 2.12), (1920, 1280), 2060.0, (965.0, 640.0), -0.0125),
    (3, "FRONT_RIGHT", np.deg2rad(-45.0), (1.50, -0.10, 2.12), (1920, 1280), 2058.0, (955.0, 640.0), 0.0125),
    (4, "SIDE_LEFT", np.deg2rad(90.0), (1.43, 0.11, 2.12), (1920, 886), 2050.0, (960.0, 443.0), -0.025),
    (5, "SIDE_RIGHT", np.deg2rad(-90.0), (1.43, -0.11, 2.12), (1920, 886), 2052.0, (958.0, 443.0), 0.025),
)
TOP_TRANSLATION = (1.43, 0.0, 2.18)
TOP_YAW = 0.0148  # the real TOP sits a little turned; the conversion must undo it
TOP_INCLINATION_DEG = (-17.6, 2.4)

# Synthetic category -> Waymo box type (None: not labelled, a no-label zone).
_TYPE_OF_CATEGORY = {"vehicle.car": 1, "vehicle.truck": 1, "vehicle.construction": 1, "vehicle.bus.rigid": 1,
                     "vehicle.trailer": 1, "human.pedestrian.adult": 2, "movable_object.trafficcone": 3,
                     "vehicle.motorcycle": 4, "vehicle.bicycle": 4}


@dataclass(frozen=True)
class WaymoSyntheticSpec:
    """What determines a synthetic Waymo dataset: `segments` of `frames_per_segment` 10 Hz frames,
    `front_width` the front camera's width in pixels (every camera keeps Waymo's aspect ratio)."""

    segments: int = 2
    frames_per_segment: int = 3
    seed: int = 0
    front_width: int = 192
    objects_per_segment: int = 8
    lidar_beams: int = 64
    lidar_azimuths: int = 512
    jpeg_quality: int = 90
    max_object_range: float | None = None
    class_mix: str = "nuscenes"

    def camera_size(self, full: tuple[int, int]) -> tuple[int, int]:
        scale = self.front_width / 1920.0
        return (max(16, round(full[0] * scale)), max(16, round(full[1] * scale)))


def segment_name(seed: int, index: int) -> str:
    """A context name shaped like Waymo's ('<20 digits>_<start>_000_<end>_000')."""
    digits = int(hashlib.sha256(f"x3kd-waymo-{seed}-{index}".encode()).hexdigest(), 16) % 10 ** 20
    return f"{digits:020d}_{index * 20 % 10000:04d}_000_{index * 20 % 10000 + 20:04d}_000"


def split_of(segments: int) -> list[str]:
    """The split of each segment: about one in five goes to validation, at least one when there are two."""
    n_val = max(1, round(segments / 5)) if segments >= 2 else 0
    return ["training"] * (segments - n_val) + ["validation"] * n_val


def top_inclinations(beams: int) -> np.ndarray:
    """(beams,) the TOP's beam inclinations, bottom-up as the calibration lists them; denser near the
    horizon, as the real TOP's are (non-uniform, so the reader must use the listed values)."""
    lo, hi = np.deg2rad(TOP_INCLINATION_DEG)
    u = np.linspace(0.0, 1.0, beams)
    return lo + (hi - lo) * (1.0 - (1.0 - u) ** 1.6)


def top_extrinsic() -> np.ndarray:
    return make_transform(rotation_z(TOP_YAW), TOP_TRANSLATION)


def camera_extrinsic(yaw: float, mount: tuple[float, float, float]) -> np.ndarray:
    """camera -> vehicle in Waymo's camera frame (x along the optical axis, y left, z up)."""
    return make_transform(rotation_z(yaw), mount)


def _check(spec: WaymoSyntheticSpec) -> None:
    for name, value, low in (("--scenes", spec.segments, 1), ("--samples-per-scene", spec.frames_per_segment, 1),
                             ("--objects", spec.objects_per_segment, 0), ("lidar_beams", spec.lidar_beams, 2),
                             ("lidar_azimuths", spec.lidar_azimuths, SPIN_SLICES)):
        if value < low:
            raise UserInputError(f"{name} {value}: must be at least {low}")
    if spec.front_width < 32:
        raise UserInputError(f"--image-size: the front camera must be at least 32 pixels wide, got {spec.front_width}")
    if spec.max_object_range is not None and spec.max_object_range < EGO_RADIUS + 4.0:
        raise UserInputError(f"--max-object-range {spec.max_object_range}: must be at least {EGO_RADIUS + 4.0:g} m")
    if spec.class_mix not in CLASS_MIXES:
        raise UserInputError(f"--class-mix {spec.class_mix!r}: use one of {', '.join(CLASS_MIXES)}")


def _list_array(arrays: list[np.ndarray], kind: pa.DataType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum([a.size for a in arrays])]).astype(np.int32)
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=kind))


def _table(component: str, columns: dict[str, object]) -> pa.Table:
    """A component table in its schema from {column name (without the '[Component].' prefix for values):
    values}; 4x4 matrices and range images may be given as numpy arrays."""
    schema = SCHEMAS[component]
    prefix = schema.names[-1].split("].")[0] + "]."
    arrays = []
    for field in schema:
        key = field.name if field.name.startswith("key.") else field.name[len(prefix):]
        values = columns[key]
        if pa.types.is_fixed_size_list(field.type):
            flat = np.asarray(values, dtype=np.float64).reshape(-1)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), field.type.list_size))
        elif pa.types.is_list(field.type) and isinstance(values, list) and values and \
                isinstance(values[0], np.ndarray):
            arrays.append(_list_array(values, field.type.value_type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _write(table: pa.Table, path: Path, rows_per_frame: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One row group per frame: a reader's filter on the frame timestamp then reads that frame's bytes only.
    pq.write_table(table, path, row_group_size=max(1, rows_per_frame), compression="zstd")


def _cast_top(spec: WaymoSyntheticSpec, ego, actors, t_frame: float, rng: np.random.Generator,
              labelled: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(range image return 1, return 2, pose image) of the TOP for the frame at `t_frame` s."""
    height, width = spec.lidar_beams, spec.lidar_azimuths
    extrinsic = top_extrinsic()
    incl = beam_inclinations(height, top_inclinations(height))  # top row first
    ratios = (np.arange(width, 0, -1) - 0.5) / width
    az = (ratios * 2.0 - 1.0) * np.pi - TOP_YAW  # sensor-frame azimuth of each column
    first = np.full((height, width, 4), -1.0, dtype=np.float32)
    second = np.full((height, width, 4), -1.0, dtype=np.float32)
    pose_image = np.zeros((height, width, 6), dtype=np.float32)
    reflectivity = np.array([a.object_class.reflectivity for a in actors] + [12.0])
    for cols in np.array_split(np.arange(width), SPIN_SLICES):
        # Columns fire in order over the spin; the slice's middle column sets its time.
        t = t_frame + (cols.mean() + 0.5) / width * SPIN_S - SPIN_S / 2
        pose = ego.pose(t)
        sensor_to_world = pose @ extrinsic
        a, e = np.meshgrid(az[cols], incl)  # (H, C)
        dirs_sensor = np.stack([np.cos(a) * np.cos(e), np.sin(a) * np.cos(e), np.sin(e)], axis=-1).reshape(-1, 3)
        dirs = dirs_sensor @ sensor_to_world[:3, :3].T
        origin = sensor_to_world[:3, 3]
        boxes = boxes_at(actors, t)
        t_box = ray_box_distances(origin, dirs, boxes) if len(boxes) else np.zeros((len(dirs), 0))
        with np.errstate(divide="ignore"):
            t_ground = np.where(dirs[:, 2] < -1e-6, -origin[2] / dirs[:, 2], np.inf)
        t_all = np.concatenate([t_box, t_ground[:, None]], axis=1)
        order = np.argsort(t_all, axis=1)
        near, behind = order[:, 0], order[:, 1] if t_all.shape[1] > 1 else order[:, 0]
        t_near = t_all[np.arange(len(dirs)), near]
        t_behind = t_all[np.arange(len(dirs)), behind]
        hit = (t_near < MAX_RANGE) & (rng.random(len(dirs)) >= DROPOUT)
        rng_near = t_near + rng.normal(0.0, RANGE_NOISE_M, len(dirs))
        intensity = np.clip(reflectivity[near] / 255.0 * rng.uniform(0.7, 1.3, len(dirs))
                            * np.clip(30.0 / (t_near + 10.0), 0.3, 2.0), 0.0, 1.5)
        is_box = near < len(boxes)
        nlz = np.where(is_box & ~np.append(labelled, True)[near], 1.0, -1.0)
        block = np.stack([np.where(hit, rng_near, -1.0), np.where(hit, intensity, -1.0),
                          np.where(hit, rng.uniform(0.0, 0.2, len(dirs)), -1.0), np.where(hit, nlz, -1.0)], axis=-1)
        first[:, cols] = block.reshape(len(incl), len(cols), 4)
        through = hit & is_box & (t_behind < MAX_RANGE) & (rng.random(len(dirs)) < SECOND_RETURN)
        nlz2 = np.where((behind < len(boxes)) & ~np.append(labelled, True)[behind], 1.0, -1.0)
        block2 = np.stack([np.where(through, t_behind + rng.normal(0.0, RANGE_NOISE_M, len(dirs)), -1.0),
                           np.where(through, intensity * 0.3, -1.0), np.where(through, 0.3, -1.0),
                           np.where(through, nlz2, -1.0)], axis=-1)
        second[:, cols] = block2.reshape(len(incl), len(cols), 4)
        rpy = rotation_to_euler(pose[:3, :3])
        pose_image[:, cols] = np.concatenate([rpy, pose[:3, 3]]).astype(np.float32)
    return first, second, pose_image


def _velocity_in(pose: np.ndarray, velocity_xy: np.ndarray) -> np.ndarray:
    v = np.array([velocity_xy[0], velocity_xy[1], 0.0])
    return pose[:3, :3].T @ v


def _generate_segment(spec: WaymoSyntheticSpec, out: Path, split: str, index: int, world_key: int,
                      progress: tqdm) -> None:
    name = segment_name(spec.seed, index)
    start_us = FIRST_TIMESTAMP_US + index * 3_600_000_000
    frame_us = [k * FRAME_INTERVAL_US for k in range(spec.frames_per_segment)]
    check_times = np.arange(-0.1, frame_us[-1] / 1e6 + 0.11, 0.05)
    world_rng = np.random.default_rng([spec.seed, world_key, 1])
    ego, actors = sample_world(world_rng, check_times, spec.objects_per_segment,
                               start_xy=(float(world_rng.uniform(300, 2000)), float(world_rng.uniform(300, 2000))),
                               max_range=spec.max_object_range, class_mix=spec.class_mix)
    types = np.array([_TYPE_OF_CATEGORY.get(a.object_class.category, 0) for a in actors], dtype=np.int8)
    labelled = types > 0
    key_seg = lambda n: [name] * n  # noqa: E731

    cams = [(cid, cname, camera_extrinsic(yaw, mount), spec.camera_size(full), focal, pp, full, delay)
            for cid, cname, yaw, mount, full, focal, pp, delay in CAMERAS]
    calib_cols = {KEY_SEGMENT: key_seg(len(cams)), KEY_CAMERA: [c[0] for c in cams], "width": [c[3][0] for c in cams],
                  "height": [c[3][1] for c in cams], "extrinsic.transform": np.stack([c[2] for c in cams]),
                  "rolling_shutter_direction": [2] * len(cams)}
    for p, values in (("f_u", [c[4] * c[3][0] / c[6][0] for c in cams]), ("f_v", [c[4] * c[3][1] / c[6][1] for c in cams]),
                      ("c_u", [c[5][0] * c[3][0] / c[6][0] for c in cams]),
                      ("c_v", [c[5][1] * c[3][1] / c[6][1] for c in cams])):
        calib_cols[f"intrinsic.{p}"] = values
    for p in ("k1", "k2", "p1", "p2", "k3"):
        calib_cols[f"intrinsic.{p}"] = [0.0] * len(cams)
    _write(_table("camera_calibration", calib_cols), out / split / "camera_calibration" / f"{name}.parquet", len(cams))
    top_incl = top_inclinations(spec.lidar_beams)
    _write(_table("lidar_calibration", {KEY_SEGMENT: [name], KEY_LASER: [TOP_LASER],
                                        "extrinsic.transform": top_extrinsic()[None],
                                        "beam_inclination.min": [float(top_incl[0])],
                                        "beam_inclination.max": [float(top_incl[-1])],
                                        "beam_inclination.values": [top_incl]}),
           out / split / "lidar_calibration" / f"{name}.parquet", 1)

    images, lidar, poses, vehicle, boxes_rows, synced_rows = [], [], [], [], [], []
    for k, t_us in enumerate(frame_us):
        ts = start_us + t_us
        t = t_us / 1e6
        pose = ego.pose(t)
        vehicle.append((ts, pose))
        for cid, cname, extrinsic, size, focal, pp, full, delay in cams:
            t_cam = t + delay
            cam_pose = ego.pose(t_cam)
            kmat = np.array([[focal * size[0] / full[0], 0.0, pp[0] * size[0] / full[0]],
                             [0.0, focal * size[1] / full[1], pp[1] * size[1] / full[1]], [0.0, 0.0, 1.0]])
            img = render_camera(size, kmat, cam_pose @ extrinsic @ WAYMO_CAMERA_FROM_CV, boxes_at(actors, t_cam),
                                [a.colour for a in actors], [a.object_class.bands for a in actors],
                                np.random.default_rng([spec.seed, world_key, 3, cid, k]))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=spec.jpeg_quality)
            images.append((ts, cid, buf.getvalue(), cam_pose, t_cam, ego))
            progress.update(1)
        r1, r2, pose_image = _cast_top(spec, ego, actors, t, np.random.default_rng([spec.seed, world_key, 2, k]),
                                       labelled)
        lidar.append((ts, r1, r2))
        poses.append((ts, pose_image))
        # Labels: boxes at the frame time in its vehicle frame, counted against the converted points.
        points = range_image_to_points(r1, top_extrinsic(), beam_inclinations(spec.lidar_beams, top_incl),
                                       pose_image, pose)
        world_boxes = boxes_at(actors, t)
        vehicle_from_world = np.linalg.inv(pose)
        local = world_boxes.copy()
        if len(local):
            local[:, :3] = world_boxes[:, :3] @ vehicle_from_world[:3, :3].T + vehicle_from_world[:3, 3]
            ego_yaw = np.arctan2(pose[1, 0], pose[0, 0])
            local[:, 6] = (world_boxes[:, 6] - ego_yaw + np.pi) % (2 * np.pi) - np.pi
        counts = points_in_boxes(points[:, :3].astype(np.float64), local).sum(axis=0) if len(local) else []
        for b, actor in enumerate(actors):
            if not labelled[b] or counts[b] == 0:
                continue
            oid = hashlib.sha256(f"{name}-{b}".encode()).hexdigest()[:22]
            speed = _velocity_in(pose, actor.velocity)
            boxes_rows.append((ts, oid, local[b], int(types[b]), int(counts[b]), speed))
            bearing = np.arctan2(local[b, 1], local[b, 0])
            best = min(cams, key=lambda c: abs(np.angle(np.exp(1j * (bearing - np.arctan2(c[2][1, 0], c[2][0, 0]))))))
            synced = local[b].copy()
            synced[:3] += speed * best[7]
            synced_rows.append((ts, oid, best[0], synced))

    def write(component: str, rows_per_frame: int, columns: dict) -> None:
        _write(_table(component, columns), out / split / component / f"{name}.parquet", rows_per_frame)

    write("vehicle_pose", 1, {KEY_SEGMENT: key_seg(len(vehicle)), KEY_TIMESTAMP: [v[0] for v in vehicle],
                              "world_from_vehicle.transform": np.stack([v[1] for v in vehicle])})
    lin, ang = [], []
    for ts, cid, jpeg, cam_pose, t_cam, _ in images:
        xy_now, yaw_now = ego.state(t_cam)
        xy_next, yaw_next = ego.state(t_cam + 1e-3)
        lin.append(np.append((xy_next - xy_now) / 1e-3, 0.0))
        ang.append(np.array([0.0, 0.0, (yaw_next - yaw_now) / 1e-3]))
    trigger = [im[4] + start_us / 1e6 - 0.5 * 0.01 for im in images]
    write("camera_image", len(cams), {
        KEY_SEGMENT: key_seg(len(images)), KEY_TIMESTAMP: [im[0] for im in images], KEY_CAMERA: [im[1] for im in images],
        "image": [im[2] for im in images], "pose.transform": np.stack([im[3] for im in images]),
        "velocity.linear_velocity.x": [v[0] for v in lin], "velocity.linear_velocity.y": [v[1] for v in lin],
        "velocity.linear_velocity.z": [v[2] for v in lin], "velocity.angular_velocity.x": [v[0] for v in ang],
        "velocity.angular_velocity.y": [v[1] for v in ang], "velocity.angular_velocity.z": [v[2] for v in ang],
        "pose_timestamp": [im[4] + start_us / 1e6 for im in images], "rolling_shutter_params.shutter": [0.005] * len(images),
        "rolling_shutter_params.camera_trigger_time": trigger,
        "rolling_shutter_params.camera_readout_done_time": [t + 0.02 for t in trigger]})
    write("lidar", 1, {KEY_SEGMENT: key_seg(len(lidar)), KEY_TIMESTAMP: [x[0] for x in lidar],
                       KEY_LASER: [TOP_LASER] * len(lidar),
                       "range_image_return1.values": [x[1] for x in lidar],
                       "range_image_return1.shape": [list(x[1].shape) for x in lidar],
                       "range_image_return2.values": [x[2] for x in lidar],
                       "range_image_return2.shape": [list(x[2].shape) for x in lidar]})
    write("lidar_pose", 1, {KEY_SEGMENT: key_seg(len(poses)), KEY_TIMESTAMP: [x[0] for x in poses],
                            KEY_LASER: [TOP_LASER] * len(poses), "range_image_return1.values": [x[1] for x in poses],
                            "range_image_return1.shape": [list(x[1].shape) for x in poses]})
    n = len(boxes_rows)
    box_cols = {KEY_SEGMENT: key_seg(n), KEY_TIMESTAMP: [r[0] for r in boxes_rows], KEY_OBJECT: [r[1] for r in boxes_rows],
                "type": [r[3] for r in boxes_rows], "num_lidar_points_in_box": [r[4] for r in boxes_rows],
                "num_top_lidar_points_in_box": [r[4] for r in boxes_rows],
                "difficulty_level.detection": [LEVEL_2 if r[4] <= FEW_POINTS else LEVEL_1 for r in boxes_rows],
                "difficulty_level.tracking": [LEVEL_2 if r[4] <= FEW_POINTS else LEVEL_1 for r in boxes_rows]}
    for i, axis in enumerate("xyz"):
        box_cols[f"box.center.{axis}"] = [float(r[2][i]) for r in boxes_rows]
        box_cols[f"speed.{axis}"] = [float(r[5][i]) for r in boxes_rows]
        box_cols[f"acceleration.{axis}"] = [0.0] * n
        box_cols[f"camera_synced_box.center.{axis}"] = [float(r[3][i]) for r in synced_rows]
    for i, axis in zip((3, 4, 5), "xyz"):
        box_cols[f"box.size.{axis}"] = [float(r[2][i]) for r in boxes_rows]
        box_cols[f"camera_synced_box.size.{axis}"] = [float(r[3][i]) for r in synced_rows]
    box_cols["box.heading"] = [float(r[2][6]) for r in boxes_rows]
    box_cols["camera_synced_box.heading"] = [float(r[3][6]) for r in synced_rows]
    box_cols["most_visible_camera_name"] = [r[2] for r in synced_rows]
    # Boxes per frame vary: one row group per frame cannot be asked of the writer, so keep them small.
    write("lidar_box", max(1, n // max(1, len(frame_us))), box_cols)
    write("lidar_camera_synced_box", max(1, n // max(1, len(frame_us))), box_cols)


def write_waymo_dataset(out_dir: str | os.PathLike, spec: WaymoSyntheticSpec) -> Path:
    """Write `spec`'s segments as `{out_dir}/{training,validation}/{component}/{segment}.parquet` (the
    directory must not exist or be empty); built beside it and renamed at the end, so an interrupted run
    leaves nothing that looks complete."""
    _check(spec)
    out = Path(out_dir)
    splits = split_of(spec.segments)
    n_train = splits.count("training")
    with building(out) as tmp, tqdm(total=spec.segments * spec.frames_per_segment * len(CAMERAS),
                                    desc="synthetic Waymo", unit="img", disable=None) as progress:
        for s, split in enumerate(splits):
            # Validation segments draw from their own streams, as the nuScenes generator's val scenes do.
            world_key = s if split == "training" else 1000 + s - n_train
            _generate_segment(spec, tmp, split, s, world_key, progress)
    log.info("wrote %d Waymo segments to %s", spec.segments, out)
    return out


PRESETS: dict[str, WaymoSyntheticSpec] = {
    "test": WaymoSyntheticSpec(),
    "demo": WaymoSyntheticSpec(segments=10, frames_per_segment=10, front_width=352, objects_per_segment=20),
    "lab": WaymoSyntheticSpec(segments=60, frames_per_segment=10, front_width=352, objects_per_segment=24,
                              max_object_range=24.0, class_mix="uniform"),
}
