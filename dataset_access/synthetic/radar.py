"""Radar returns of the synthetic world, written as nuScenes radar `.pcd` files.

An automotive radar (the ARS 408 of nuScenes) reports a few tens of clustered reflections per scan:
mostly on metal objects, more on big ones, a little clutter, no elevation, and for each return the
Doppler (radial) velocity, raw and compensated for the ego car's own motion. The simulation keeps
exactly those properties, because they are what makes radar-only detection hard:
- returns per object per scan ~ Poisson(size x material x range falloff), on the object's face toward
  the sensor; an object hidden behind another one returns far fewer;
- position noise in range and azimuth, z = 0 in the radar frame (the sensor measures no elevation);
- `vx, vy`: the radial component of (object velocity - sensor velocity), as a vector along the ray;
  `vx_comp, vy_comp`: the radial component of the object's own velocity (what the ego compensation of
  the real sensor leaves), both in the radar frame;
- stationary clutter (valid returns on nothing) and invalid returns (low RCS) that nuscenes-devkit's
  default filters (`invalid_state` 0, `dyn_prop` 0-6, `ambig_state` 3) drop.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset_access.synthetic.lidar import ray_box_distances
from dataset_access.synthetic.rig import RADAR_FOV, RADAR_MAX_RANGE
from dataset_access.synthetic.world import OBJECT_CLASSES

# The 18 fields of a nuScenes radar point, with their pcd SIZE and TYPE.
PCD_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("x", 4, "F"), ("y", 4, "F"), ("z", 4, "F"), ("dyn_prop", 1, "I"), ("id", 2, "I"), ("rcs", 4, "F"),
    ("vx", 4, "F"), ("vy", 4, "F"), ("vx_comp", 4, "F"), ("vy_comp", 4, "F"), ("is_quality_valid", 1, "I"),
    ("ambig_state", 1, "I"), ("x_rms", 1, "I"), ("y_rms", 1, "I"), ("invalid_state", 1, "I"), ("pdh0", 1, "I"),
    ("vx_rms", 1, "I"), ("vy_rms", 1, "I"),
)
PCD_DTYPE = np.dtype([(name, {("F", 4): "<f4", ("I", 1): "i1", ("I", 2): "<i2"}[(t, size)])
                      for name, size, t in PCD_FIELDS])

RANGE_NOISE_M = 0.15
AZIMUTH_NOISE_RAD = np.deg2rad(0.6)
VELOCITY_NOISE = 0.1  # m/s
CLUTTER_PER_SCAN = 2.0  # valid returns on nothing (guard rails, ground), mean per scan
INVALID_PER_SCAN = 1.5  # returns flagged invalid (low RCS), dropped by the devkit's default filter
OCCLUDED_FACTOR = 0.15  # multipath: an object hidden behind another one still returns a little
# How strongly each kind of object reflects (radar sees metal; people, cones and plastic barely).
_MATERIAL = {"vehicle.car": 1.2, "vehicle.truck": 1.2, "vehicle.construction": 1.2, "vehicle.bus.rigid": 1.2,
             "vehicle.trailer": 1.2, "movable_object.barrier": 0.8, "vehicle.motorcycle": 0.8,
             "vehicle.bicycle": 0.6, "human.pedestrian.adult": 0.5, "movable_object.trafficcone": 0.45,
             "movable_object.pushable_pullable": 0.45}


def radar_cross_section(class_index: int, size_wlh: tuple[float, float, float]) -> float:
    """Mean RCS (dBsm) of an object: its side area and material (a car ~ 8, a pedestrian ~ -2)."""
    w, l, h = size_wlh
    material = _MATERIAL[OBJECT_CLASSES[class_index].category]
    return float(10.0 * np.log10(l * h * material ** 2) + 0.5)


def _expected_returns(class_index: int, size_wlh: tuple[float, float, float], distance: float) -> float:
    w, l, h = size_wlh
    material = _MATERIAL[OBJECT_CLASSES[class_index].category]
    return float(np.sqrt(l * h) * material * np.clip(20.0 / (distance + 5.0), 0.3, 1.5))


def scan_radar(radar_to_world: np.ndarray, sensor_velocity: np.ndarray, boxes: np.ndarray,
               velocities: np.ndarray, class_indices: list[int], sizes: list[tuple[float, float, float]],
               rng: np.random.Generator) -> np.ndarray:
    """One radar scan from pose `radar_to_world` moving at `sensor_velocity` (world xy, m/s) among
    world `boxes` (B, 7) moving at `velocities` (B, 2): a structured array of `PCD_DTYPE` in the radar
    frame (x along the boresight, y left), returns of objects first, then clutter, then invalid ones."""
    origin = radar_to_world[:3, 3]
    world_to_radar = np.linalg.inv(radar_to_world)
    rot = world_to_radar[:3, :3]
    rows = []

    for b in range(len(boxes)):
        centre = rot @ (boxes[b, :3] - origin)
        distance = float(np.hypot(centre[0], centre[1]))
        if distance > RADAR_MAX_RANGE or abs(np.arctan2(centre[1], centre[0])) > RADAR_FOV:
            continue
        lam = _expected_returns(class_indices[b], sizes[b], distance)
        # Hidden: the ray to the box centre meets another box first.
        to_centre = boxes[b, :3] - origin
        to_centre[2] = 0.0
        d = to_centre / max(np.linalg.norm(to_centre), 1e-6)
        others = np.delete(boxes, b, axis=0)
        first = ray_box_distances(origin, d[None], others)[0] if len(others) else np.array([np.inf])
        if np.min(first, initial=np.inf) < distance:
            lam *= OCCLUDED_FACTOR
        n = int(rng.poisson(lam))
        if n == 0:
            continue
        # Aim at random points of the box; the return comes from where the ray enters it.
        x, y, z, length, width, height, yaw = boxes[b]
        c, s = np.cos(yaw), np.sin(yaw)
        u = rng.uniform(-0.45, 0.45, n) * length
        v = rng.uniform(-0.45, 0.45, n) * width
        targets = np.stack([x + c * u - s * v, y + s * u + c * v, np.full(n, origin[2])], axis=1)
        dirs = targets - origin
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        t = ray_box_distances(origin, dirs, boxes[b:b + 1])[:, 0]
        t = np.where(np.isfinite(t), t, np.linalg.norm(targets - origin, axis=1))
        hits = origin + dirs * (t[:, None] + 0.05)  # just inside the face, so the box counts the point
        rcs = radar_cross_section(class_indices[b], sizes[b]) + rng.normal(0.0, 2.0, n)
        rows.append(_returns(hits, rot, origin, velocities[b], sensor_velocity, rcs, rng, moving_object=True))

    n = int(rng.poisson(CLUTTER_PER_SCAN))
    if n:
        az = rng.uniform(-RADAR_FOV, RADAR_FOV, n)
        rg = rng.uniform(5.0, 60.0, n)
        local = np.stack([rg * np.cos(az), rg * np.sin(az), np.zeros(n)], axis=1)
        hits = local @ rot + origin  # rot is world->radar; its transpose maps back
        rows.append(_returns(hits, rot, origin, np.zeros(2), sensor_velocity, rng.uniform(-8.0, 2.0, n), rng,
                             moving_object=False))
    n = int(rng.poisson(INVALID_PER_SCAN))
    if n:
        az = rng.uniform(-RADAR_FOV, RADAR_FOV, n)
        rg = rng.uniform(1.0, 60.0, n)
        local = np.stack([rg * np.cos(az), rg * np.sin(az), np.zeros(n)], axis=1)
        invalid = _returns(local @ rot + origin, rot, origin, np.zeros(2), sensor_velocity,
                           rng.uniform(-15.0, -8.0, n), rng, moving_object=False)
        invalid["invalid_state"] = 1  # "invalid due to low RCS"
        rows.append(invalid)
    out = np.concatenate(rows) if rows else np.zeros(0, PCD_DTYPE)
    out["id"] = np.arange(len(out))
    return out


def _returns(hits_world: np.ndarray, rot: np.ndarray, origin: np.ndarray, velocity: np.ndarray,
             sensor_velocity: np.ndarray, rcs: np.ndarray, rng: np.random.Generator,
             moving_object: bool) -> np.ndarray:
    """Radar points for world positions `hits_world` of a thing moving at `velocity` (world xy)."""
    n = len(hits_world)
    rel = hits_world - origin
    rel[:, 2] = 0.0
    ray = rel / np.maximum(np.linalg.norm(rel, axis=1, keepdims=True), 1e-6)  # world, horizontal
    v3 = np.array([velocity[0], velocity[1], 0.0])
    s3 = np.array([sensor_velocity[0], sensor_velocity[1], 0.0])
    radial_abs = ray @ v3 + rng.normal(0.0, VELOCITY_NOISE, n)
    radial_rel = ray @ (v3 - s3) + rng.normal(0.0, VELOCITY_NOISE, n)
    ray_local = ray @ rot.T
    local = rel @ rot.T
    rng_m = np.hypot(local[:, 0], local[:, 1]) + rng.normal(0.0, RANGE_NOISE_M, n)
    az = np.arctan2(local[:, 1], local[:, 0]) + rng.normal(0.0, AZIMUTH_NOISE_RAD, n)
    out = np.zeros(n, PCD_DTYPE)
    out["x"], out["y"] = rng_m * np.cos(az), rng_m * np.sin(az)
    out["rcs"] = rcs
    out["vx"], out["vy"] = radial_rel * ray_local[:, 0], radial_rel * ray_local[:, 1]
    out["vx_comp"], out["vy_comp"] = radial_abs * ray_local[:, 0], radial_abs * ray_local[:, 1]
    moving = moving_object & (np.abs(radial_abs) > 0.5)
    # dyn_prop: 0 moving, 2 oncoming, 1 stationary
    out["dyn_prop"] = np.where(moving, np.where(radial_abs < 0, 2, 0), 1)
    out["is_quality_valid"] = 1
    out["ambig_state"] = 3  # unambiguous Doppler
    out["x_rms"], out["y_rms"], out["vx_rms"], out["vy_rms"] = 3, 3, 3, 3
    out["pdh0"] = 1  # false-alarm probability < 25%
    return out


def write_radar_pcd(path: Path, points: np.ndarray) -> None:
    """A nuScenes radar `.pcd` (v0.7, binary) that `RadarPointCloud.from_file` reads. An empty scan is
    one NaN point, the devkit's convention (it needs WIDTH > 0); the devkit also needs a byte after
    the data, so a newline ends the file."""
    if len(points) == 0:
        points = np.zeros(1, PCD_DTYPE)
        points["x"] = points["y"] = points["z"] = np.nan
    header = "\n".join([
        "# .PCD v0.7 - Point Cloud Data file format", "VERSION 0.7",
        "FIELDS " + " ".join(f[0] for f in PCD_FIELDS), "SIZE " + " ".join(str(f[1]) for f in PCD_FIELDS),
        "TYPE " + " ".join(f[2] for f in PCD_FIELDS), "COUNT " + " ".join("1" for _ in PCD_FIELDS),
        f"WIDTH {len(points)}", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", f"POINTS {len(points)}", "DATA binary", ""])
    path.write_bytes(header.encode() + points.astype(PCD_DTYPE).tobytes() + b"\n")
