"""Write a small nuScenes-format dataroot (tables, LiDAR and radar key frames and sweeps, six camera JPEGs, a map)
of a synthetic world that nuscenes-devkit loads and evaluates like the real v1.0-mini.

Scenes reuse real scene names of the version's train/val splits (mini_train/mini_val for v1.0-mini)
because the devkit selects evaluation samples by hard-coded scene names. Output is a pure function of
the arguments: tokens are hashes of (seed, record identity), every random stream is seeded from (seed,
scene, purpose, frame), and JSON/JPEG/PNG writers are deterministic, so the same call writes the same
bytes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nuscenes.utils.splits import create_splits_scenes
from PIL import Image
from tqdm import tqdm

from cache_schema.errors import UserInputError
from cache_schema.frames import matrix_to_quaternion, yaw_to_quaternion
from dataset_access.nuscenes.samples import LIDAR_NAME
from dataset_access.synthetic.camera import render_camera
from dataset_access.synthetic.lidar import cast_lidar, points_in_boxes
from dataset_access.synthetic.output import building
from dataset_access.synthetic.radar import scan_radar, write_radar_pcd
from dataset_access.synthetic.rig import (CAMERAS, RADAR_PERIOD_US, RADARS, camera_intrinsics, camera_to_ego,
                                               lidar_to_ego, radar_to_ego)
from dataset_access.synthetic.world import CLASS_MIXES, EGO_RADIUS, OBJECT_CLASSES, Actor, boxes_at, sample_world

log = logging.getLogger(__name__)

KEY_INTERVAL_US = 500_000  # nuScenes key frames come at 2 Hz
FIRST_TIMESTAMP_US = 1_531_883_530_449_377
LOCATIONS = ("singapore-onenorth", "boston-seaport", "singapore-queenstown", "singapore-hollandvillage")
VISIBILITY_LEVELS = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))
ATTRIBUTES = ("vehicle.moving", "vehicle.stopped", "vehicle.parked", "cycle.with_rider", "cycle.without_rider",
              "pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down")
VERSION_SPLITS = {"v1.0-mini": ("mini_train", "mini_val"), "v1.0-trainval": ("train", "val")}


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a generated dataset (see `generate_synthetic` for the meaning)."""

    scenes: int = 2
    samples_per_scene: int = 3
    seed: int = 0
    image_size: tuple[int, int] = (160, 90)
    sweeps_per_sample: int = 2
    objects_per_scene: int = 8
    lidar_beams: int = 32
    lidar_azimuths: int = 360
    version: str = "v1.0-mini"
    jpeg_quality: int = 90
    radar_sweeps_per_sample: int = 5  # radar scans before each key-frame scan, per radar (13 Hz)
    # None: objects anywhere within their class's evaluation range (up to 46 m); a distance keeps
    # every object within it of the ego car (the lab: all of them on the student's +-25.6 m grid)
    max_object_range: float | None = None
    class_mix: str = "nuscenes"  # "nuscenes" frequencies or "uniform" (world.class_weights)


# `test`: about a second on one core, ~5 MB. `demo`: nuScenes v1.0-mini's 10 scenes (10 samples each
# instead of ~40), big enough to train a tiny student on a CPU in minutes; fewer sweeps (4 instead of
# nuScenes' 9) and a coarser LiDAR keep it near 150 MB and well under a minute to write.
PRESETS: dict[str, SyntheticSpec] = {
    "test": SyntheticSpec(),
    "demo": SyntheticSpec(scenes=10, samples_per_scene=10, image_size=(352, 198), sweeps_per_sample=4,
                          objects_per_scene=20, lidar_azimuths=512),
    "lab": SyntheticSpec(scenes=60, samples_per_scene=10, image_size=(352, 198), sweeps_per_sample=4,
                         objects_per_scene=24, lidar_azimuths=512, version="v1.0-trainval",
                         max_object_range=24.0, class_mix="uniform"),
}


def _check(spec: SyntheticSpec) -> None:
    if spec.version not in VERSION_SPLITS:
        raise UserInputError(f"version {spec.version!r}: the generator writes one of {sorted(VERSION_SPLITS)}")
    splits = create_splits_scenes()
    train, val = (splits[s] for s in VERSION_SPLITS[spec.version])
    if not 1 <= spec.scenes <= len(train) + len(val):
        raise UserInputError(f"--scenes {spec.scenes}: {spec.version} has names for 1..{len(train) + len(val)} scenes")
    for name, value, low in (("--samples-per-scene", spec.samples_per_scene, 1),
                             ("--sweeps", spec.sweeps_per_sample, 0),
                             ("--radar-sweeps", spec.radar_sweeps_per_sample, 0),
                             ("--objects", spec.objects_per_scene, 0), ("lidar_beams", spec.lidar_beams, 2),
                             ("lidar_azimuths", spec.lidar_azimuths, 8)):
        if value < low:
            raise UserInputError(f"{name} {value}: must be at least {low}")
    if spec.max_object_range is not None and spec.max_object_range < EGO_RADIUS + 4.0:
        raise UserInputError(f"--max-object-range {spec.max_object_range}: must be at least {EGO_RADIUS + 4.0:g} m "
                             "(objects keep clear of the ego car)")
    if spec.class_mix not in CLASS_MIXES:
        raise UserInputError(f"--class-mix {spec.class_mix!r}: use one of {', '.join(CLASS_MIXES)}")
    if min(spec.image_size) < 16:
        raise UserInputError(f"--image-size {spec.image_size[0]}x{spec.image_size[1]}: both sides must be >= 16 pixels")


def scene_names(version: str, scenes: int) -> tuple[list[str], list[str]]:
    """(train, val) real scene names used for `scenes` synthetic scenes of `version`: about one in five
    scenes goes to val, at least one, so both splits exist whenever there are two scenes or more."""
    splits = create_splits_scenes()
    train, val = (splits[s] for s in VERSION_SPLITS[version])
    n_val = min(len(val), max(1, round(scenes / 5)))
    n_train = min(len(train), scenes - n_val)
    n_val = scenes - n_train
    return list(train[:n_train]), list(val[:n_val])


class _Tables:
    """The 13 nuScenes tables being built, and deterministic tokens for their records."""

    NAMES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
             "scene", "sample", "sample_data", "sample_annotation", "map")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rows: dict[str, list[dict]] = {name: [] for name in self.NAMES}

    def token(self, *key: object) -> str:
        return hashlib.md5(":".join(str(k) for k in (self.seed, *key)).encode()).hexdigest()

    def add(self, table: str, record: dict) -> dict:
        self.rows[table].append(record)
        return record

    def write(self, table_root: Path) -> None:
        table_root.mkdir(parents=True, exist_ok=True)
        for name in self.NAMES:
            (table_root / f"{name}.json").write_text(json.dumps(self.rows[name], indent=1))


def _link(records: list[dict]) -> None:
    """Fill `prev`/`next` of consecutive records with each other's tokens ('' at the ends)."""
    for i, rec in enumerate(records):
        rec["prev"] = records[i - 1]["token"] if i > 0 else ""
        rec["next"] = records[i + 1]["token"] if i + 1 < len(records) else ""


def _pose_record(pose: np.ndarray) -> dict:
    return {"rotation": matrix_to_quaternion(pose[:3, :3]).tolist(), "translation": pose[:3, 3].tolist()}


def _rng(spec: SyntheticSpec, *key: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, *key])


# Val scenes draw from streams above every train scene's (nuScenes has 700 train scenes of 850).
VAL_WORLD_KEY = 1000


def _world_key(scene_index: int, num_train: int) -> int:
    """What seeds a scene's random streams: its place in its split, val scenes offset by VAL_WORLD_KEY,
    not its place in the dataset, so the k-th train (val) scene is the same world whatever the number of
    scenes: a smaller dataset is a subset of a bigger one of the same options and seed (a teacher
    fitted on a big dataset's train split has never seen a small one's val scenes). Train scenes keep
    the streams they had when scenes were keyed by dataset index (train scenes come first)."""
    return scene_index if scene_index < num_train else VAL_WORLD_KEY + scene_index - num_train


def _visibility(visible: int, unoccluded: int) -> str:
    """nuScenes visibility token from the fraction of LiDAR rays that reach the object unblocked."""
    frac = visible / unoccluded if unoccluded else 0.0
    return "1" if frac < 0.4 else "2" if frac < 0.6 else "3" if frac < 0.8 else "4"


def _write_static_tables(tables: _Tables) -> dict[str, str]:
    """Category, attribute, visibility and sensor tables; returns tokens by name/channel."""
    tokens = {}
    for cls in OBJECT_CLASSES:
        tokens[cls.category] = tables.add("category", {"token": tables.token("category", cls.category),
                                                       "name": cls.category, "description": "synthetic"})["token"]
    for name in ATTRIBUTES:
        tokens[name] = tables.add("attribute", {"token": tables.token("attribute", name), "name": name,
                                                "description": "synthetic"})["token"]
    for token, level in VISIBILITY_LEVELS:
        tables.add("visibility", {"token": token, "level": level,
                                  "description": f"visibility of whole object is between {level[1:]}%"})
    channels = [(LIDAR_NAME, "lidar")] + [(c.name, "camera") for c in CAMERAS] + [(r.name, "radar") for r in RADARS]
    for channel, modality in channels:
        tokens[channel] = tables.add("sensor", {"token": tables.token("sensor", channel), "channel": channel,
                                                "modality": modality})["token"]
    return tokens


def _generate_scene(spec: SyntheticSpec, tables: _Tables, tokens: dict[str, str], root: Path, scene_index: int,
                    world_key: int, name: str, progress: tqdm) -> None:
    """Draw one scene's world (random streams seeded by `world_key`) and write its log, calibration,
    samples, sensor data and annotations."""
    s = scene_index
    location = LOCATIONS[s % len(LOCATIONS)]
    logfile = f"n900-2018-07-{1 + s % 28:02d}-11-{s // 28:02d}-00+0800"
    log_rec = tables.add("log", {"token": tables.token("log", s), "logfile": logfile, "vehicle": "n900",
                                 "date_captured": f"2018-07-{1 + s % 28:02d}", "location": location})

    # Per-log calibration: the real rig, mounted a little differently in each log.
    cal_rng = _rng(spec, world_key, 0)
    jitter_scale = np.array([0.01, 0.01, 0.01, 0.003, 0.003, 0.003])
    l2e = lidar_to_ego(cal_rng.normal(0.0, 1.0, 6) * jitter_scale * 0.5)
    calib = {LIDAR_NAME: tables.add("calibrated_sensor", {
        "token": tables.token("calibrated_sensor", s, LIDAR_NAME), "sensor_token": tokens[LIDAR_NAME],
        **_pose_record(l2e), "camera_intrinsic": []})["token"]}
    cams = []
    for cam in CAMERAS:
        c2e = camera_to_ego(cam, cal_rng.normal(0.0, 1.0, 6) * jitter_scale)
        k = camera_intrinsics(cam, spec.image_size)
        calib[cam.name] = tables.add("calibrated_sensor", {
            "token": tables.token("calibrated_sensor", s, cam.name), "sensor_token": tokens[cam.name],
            **_pose_record(c2e), "camera_intrinsic": k.tolist()})["token"]
        cams.append((cam, c2e, k))
    radars = []
    for radar in RADARS:
        r2e = radar_to_ego(radar, cal_rng.normal(0.0, 1.0, 6) * jitter_scale)
        calib[radar.name] = tables.add("calibrated_sensor", {
            "token": tables.token("calibrated_sensor", s, radar.name), "sensor_token": tokens[radar.name],
            **_pose_record(r2e), "camera_intrinsic": []})["token"]
        radars.append((radar, r2e))

    # Timeline (microseconds after the scene's first key frame): key frames at 2 Hz, LiDAR sweeps
    # evenly between them (and before the first one, so every key frame has its previous sweeps).
    sweep_us = KEY_INTERVAL_US // (spec.sweeps_per_sample + 1)
    key_us = [k * KEY_INTERVAL_US for k in range(spec.samples_per_scene)]
    lidar_us = [(k, t - j * sweep_us) for k, t in enumerate(key_us) for j in range(spec.sweeps_per_sample, -1, -1)]
    start_us = FIRST_TIMESTAMP_US + s * 3_600_000_000
    check_times = np.arange(lidar_us[0][1], key_us[-1] + 50_001, 50_000) / 1e6
    world_rng = _rng(spec, world_key, 1)
    ego, actors = sample_world(world_rng, check_times, spec.objects_per_scene,
                               start_xy=(float(world_rng.uniform(300, 2000)), float(world_rng.uniform(300, 2000))),
                               max_range=spec.max_object_range, class_mix=spec.class_mix)

    scene_tok = tables.token("scene", s)
    samples = [tables.add("sample", {"token": tables.token("sample", s, k), "timestamp": start_us + t,
                                     "scene_token": scene_tok}) for k, t in enumerate(key_us)]
    _link(samples)
    tables.add("scene", {"token": scene_tok, "log_token": log_rec["token"], "nbr_samples": len(samples),
                         "first_sample_token": samples[0]["token"], "last_sample_token": samples[-1]["token"],
                         "name": name, "description": f"synthetic, ego {ego.speed:.1f} m/s, {len(actors)} objects"})

    reflectivity = np.array([a.object_class.reflectivity for a in actors])
    lidar_records, key_scans = [], {}
    for i, (k, t) in enumerate(lidar_us):
        is_key = t == key_us[k]
        ts = start_us + t
        pose = ego.pose(t / 1e6)
        boxes = boxes_at(actors, t / 1e6)
        scan = cast_lidar(pose @ l2e, boxes, reflectivity, _rng(spec, world_key, 2, i), spec.lidar_beams,
                          spec.lidar_azimuths)
        folder = "samples" if is_key else "sweeps"
        filename = f"{folder}/{LIDAR_NAME}/{logfile}__{LIDAR_NAME}__{ts}.pcd.bin"
        (root / filename).write_bytes(scan.points.tobytes())
        lidar_records.append(_sample_data(tables, s, LIDAR_NAME, ts, pose, calib[LIDAR_NAME], samples[k]["token"],
                                          is_key, filename, "pcd", 0, 0))
        if is_key:
            key_scans[k] = (scan, pose @ l2e, boxes)
    _link(lidar_records)

    for ci, (cam, c2e, k_mat) in enumerate(cams):
        records = []
        for k, t in enumerate(key_us):
            t_cam = t + round(cam.delay_s * 1e6)
            ts = start_us + t_cam
            pose = ego.pose(t_cam / 1e6)
            img = render_camera(spec.image_size, k_mat, pose @ c2e, boxes_at(actors, t_cam / 1e6),
                                [a.colour for a in actors], [a.object_class.bands for a in actors],
                                _rng(spec, world_key, 3, ci, k))
            filename = f"samples/{cam.name}/{logfile}__{cam.name}__{ts}.jpg"
            img.save(root / filename, format="JPEG", quality=spec.jpeg_quality)
            records.append(_sample_data(tables, s, cam.name, ts, pose, calib[cam.name], samples[k]["token"], True,
                                        filename, "jpg", spec.image_size[0], spec.image_size[1]))
            progress.update(1)
        _link(records)

    key_radar = _write_radar(spec, tables, root, s, world_key, logfile, radars, calib, ego, actors, samples, key_us,
                             start_us)
    _annotate(tables, tokens, s, actors, samples, key_scans, key_radar)


def _write_radar(spec: SyntheticSpec, tables: _Tables, root: Path, s: int, world_key: int, logfile: str,
                 radars: list, calib: dict[str, str], ego, actors: list[Actor], samples: list[dict], key_us: list[int],
                 start_us: int) -> dict[int, np.ndarray]:
    """Every radar's scans (13 Hz, `radar_sweeps_per_sample` before each key-frame scan; the radars are
    not synchronised, so each runs a few ms after the previous one) as .pcd files and sample_data
    records. Returns per key frame the world xyz of the key-frame returns the devkit's default filters
    keep, for the annotations' `num_radar_pts`."""
    velocities = np.array([a.velocity for a in actors]).reshape(-1, 2)
    classes = [a.class_index for a in actors]
    sizes = [a.size_wlh for a in actors]
    key_points: dict[int, list[np.ndarray]] = {k: [] for k in range(len(key_us))}
    for ri, (radar, r2e) in enumerate(radars):
        records = []
        for k, t_key in enumerate(key_us):
            for j in range(spec.radar_sweeps_per_sample, -1, -1):
                t = t_key + ri * 9_000 - j * RADAR_PERIOD_US
                ts = start_us + t
                pose = ego.pose(t / 1e6)
                to_world = pose @ r2e
                # The sensor's own velocity (ego speed and the yaw rate's lever arm) by central difference.
                dt = 0.01
                sensor_velocity = ((ego.pose(t / 1e6 + dt) @ r2e)[:2, 3] - (ego.pose(t / 1e6 - dt) @ r2e)[:2, 3]) / (2 * dt)
                scan = scan_radar(to_world, sensor_velocity, boxes_at(actors, t / 1e6), velocities, classes, sizes,
                                  _rng(spec, world_key, 4, ri, k, j))
                is_key = j == 0
                folder = "samples" if is_key else "sweeps"
                filename = f"{folder}/{radar.name}/{logfile}__{radar.name}__{ts}.pcd"
                write_radar_pcd(root / filename, scan)
                records.append(_sample_data(tables, s, radar.name, ts, pose, calib[radar.name], samples[k]["token"],
                                            is_key, filename, "pcd", 0, 0))
                if is_key:
                    kept = scan[scan["invalid_state"] == 0]
                    local = np.stack([kept["x"], kept["y"], kept["z"]], axis=1).astype(np.float64)
                    key_points[k].append(local @ to_world[:3, :3].T + to_world[:3, 3])
        _link(records)
    return {k: np.concatenate(v) if v else np.zeros((0, 3)) for k, v in key_points.items()}


def _sample_data(tables: _Tables, s: int, channel: str, ts: int, pose: np.ndarray, calib_token: str,
                 sample_token: str, is_key: bool, filename: str, fileformat: str, width: int, height: int) -> dict:
    """A sample_data record and the ego_pose record at its timestamp (nuScenes keeps one per record)."""
    pose_tok = tables.add("ego_pose", {"token": tables.token("ego_pose", s, channel, ts), "timestamp": ts,
                                       **_pose_record(pose)})["token"]
    return tables.add("sample_data", {
        "token": tables.token("sample_data", s, channel, ts), "sample_token": sample_token,
        "ego_pose_token": pose_tok, "calibrated_sensor_token": calib_token, "timestamp": ts,
        "fileformat": fileformat, "is_key_frame": is_key, "height": height, "width": width, "filename": filename})


def _annotate(tables: _Tables, tokens: dict[str, str], s: int, actors: list[Actor], samples: list[dict],
              key_scans: dict[int, tuple], key_radar: dict[int, np.ndarray]) -> None:
    """One instance per actor, one annotation per key frame, with LiDAR and radar point counts (of the
    key-frame scans, as nuScenes counts them) and visibility."""
    per_actor: list[list[dict]] = [[] for _ in actors]
    for k, sample in enumerate(samples):
        scan, lidar_to_world, boxes = key_scans[k]
        if not actors:
            continue
        pts_world = scan.points[:, :3].astype(np.float64) @ lidar_to_world[:3, :3].T + lidar_to_world[:3, 3]
        counts = points_in_boxes(pts_world, boxes).sum(axis=0)
        radar_counts = points_in_boxes(key_radar[k], boxes).sum(axis=0)
        for a, actor in enumerate(actors):
            cls = actor.object_class
            attr = cls.moving_attribute if actor.speed > 0 else cls.still_attribute
            x, y, z = boxes[a, :3]
            per_actor[a].append(tables.add("sample_annotation", {
                "token": tables.token("sample_annotation", s, a, k), "sample_token": sample["token"],
                "instance_token": tables.token("instance", s, a),
                "visibility_token": _visibility(int(scan.visible_rays[a]), int(scan.unoccluded_rays[a])),
                "attribute_tokens": [tokens[attr]] if attr else [],
                "translation": [float(x), float(y), float(z)], "size": list(actor.size_wlh),
                "rotation": yaw_to_quaternion(actor.yaw).tolist(),
                "num_lidar_pts": int(counts[a]), "num_radar_pts": int(radar_counts[a])}))
    for a, actor in enumerate(actors):
        _link(per_actor[a])
        tables.add("instance", {"token": tables.token("instance", s, a),
                                "category_token": tokens[actor.object_class.category],
                                "nbr_annotations": len(per_actor[a]),
                                "first_annotation_token": per_actor[a][0]["token"],
                                "last_annotation_token": per_actor[a][-1]["token"]})


def generate_synthetic(out_dir: str | os.PathLike, *, scenes: int = 2, samples_per_scene: int = 3, seed: int = 0,
                       image_size: tuple[int, int] = (160, 90), sweeps_per_sample: int = 2, objects_per_scene: int = 8,
                       lidar_beams: int = 32, lidar_azimuths: int = 360, version: str = "v1.0-mini",
                       jpeg_quality: int = 90, radar_sweeps_per_sample: int = 5,
                       max_object_range: float | None = None, class_mix: str = "nuscenes") -> Path:
    """Write a synthetic nuScenes-format dataroot to `out_dir` (which must not exist or be empty) and
    return its path.

    `scenes` scenes of `samples_per_scene` key frames (2 Hz) each, with `sweeps_per_sample` LiDAR sweeps
    before every key frame, six camera images of `image_size` (width, height) per key frame, about
    `objects_per_scene` objects per scene, a `lidar_beams` x `lidar_azimuths` LiDAR, for nuScenes
    `version` v1.0-mini (up to 10 scenes, named after mini_train / mini_val) or v1.0-trainval (named
    after train / val), and nuScenes' five radars with `radar_sweeps_per_sample` scans before each
    key-frame scan (see `synthetic.radar`). Objects stay within `max_object_range` metres of the ego
    car when given (else within their class's evaluation range), drawn with the `class_mix`
    frequencies ("nuscenes" or "uniform"). The same arguments write the same bytes, and the k-th train
    (val) scene does not depend on the number of scenes.
    """
    spec = SyntheticSpec(scenes=scenes, samples_per_scene=samples_per_scene, seed=seed,
                         image_size=(int(image_size[0]), int(image_size[1])), sweeps_per_sample=sweeps_per_sample,
                         objects_per_scene=objects_per_scene, lidar_beams=lidar_beams, lidar_azimuths=lidar_azimuths,
                         version=version, jpeg_quality=jpeg_quality,
                         radar_sweeps_per_sample=radar_sweeps_per_sample, max_object_range=max_object_range,
                         class_mix=class_mix)
    return write_dataset(out_dir, spec)


def write_dataset(out_dir: str | os.PathLike, spec: SyntheticSpec) -> Path:
    """`generate_synthetic` for a ready `SyntheticSpec`."""
    _check(spec)
    out = Path(out_dir)
    with building(out) as tmp:
        folders = (["maps", f"samples/{LIDAR_NAME}", f"sweeps/{LIDAR_NAME}"] + [f"samples/{c.name}" for c in CAMERAS]
                   + [f"{f}/{r.name}" for r in RADARS for f in ("samples", "sweeps")])
        for folder in folders:
            (tmp / folder).mkdir(parents=True, exist_ok=True)
        tables = _Tables(spec.seed)
        tokens = _write_static_tables(tables)
        train, val = scene_names(spec.version, spec.scenes)
        log.info("writing %d scenes (%s train, %s val) to %s", spec.scenes, len(train), len(val), out)
        with tqdm(total=spec.scenes * spec.samples_per_scene * len(CAMERAS), desc="synthetic nuScenes",
                  unit="img", disable=None) as progress:
            for s, name in enumerate(train + val):
                _generate_scene(spec, tables, tokens, tmp, s, _world_key(s, len(train)), name, progress)
        _write_maps(tables, tmp)
        tables.write(tmp / spec.version)
    return out


def _write_maps(tables: _Tables, root: Path) -> None:
    """One semantic-prior map per location in use (the devkit requires every log to have a map); the
    mask is a plain drivable square, as nothing here uses map content."""
    for location in LOCATIONS:
        logs = [rec["token"] for rec in tables.rows["log"] if rec["location"] == location]
        if not logs:
            continue
        token = tables.token("map", location)
        filename = f"maps/{token}.png"
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[8:56, 8:56] = 255
        Image.fromarray(mask).save(root / filename, format="PNG")
        tables.add("map", {"token": token, "log_tokens": logs, "category": "semantic_prior", "filename": filename})
