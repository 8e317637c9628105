"""A vectorised ray caster for a spinning multi-beam LiDAR over a ground plane and upright boxes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataset_access.synthetic.rig import LIDAR_MAX_RANGE, lidar_elevations

RANGE_NOISE_M = 0.02
DROPOUT = 0.03
GROUND_REFLECTIVITY = 12.0


@dataclass(frozen=True)
class LidarScan:
    """One sweep: `points` (N, 5) float32 (x, y, z, intensity, ring) in the LiDAR frame, `hit_box` (N,)
    the index of the box each point hit (-1 for the ground), and per box the rays that reached it
    (`visible_rays`) and the rays that would have reached it with no other box in the way
    (`unoccluded_rays`)."""

    points: np.ndarray
    hit_box: np.ndarray
    visible_rays: np.ndarray
    unoccluded_rays: np.ndarray


def ray_box_distances(origin: np.ndarray, dirs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(R, B) distance along each unit ray in `dirs` (R, 3) from `origin` (3,) to its first hit on each box
    of `boxes` (B, 7: x, y, z, l, w, h, yaw), inf on a miss (slab test in each box's own frame)."""
    if len(boxes) == 0:
        return np.full((len(dirs), 0), np.inf)
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rel = origin[None, :] - boxes[:, :3]  # (B, 3)
    # Rotate by -yaw into each box frame.
    o_local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], axis=-1)
    d_local = np.stack([dirs[:, None, 0] * c + dirs[:, None, 1] * s,
                        -dirs[:, None, 0] * s + dirs[:, None, 1] * c,
                        np.broadcast_to(dirs[:, None, 2], (len(dirs), len(boxes)))], axis=-1)  # (R, B, 3)
    half = boxes[:, 3:6] / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d_local
        t1 = (-half - o_local) * inv
        t2 = (half - o_local) * inv
    # A ray parallel to a slab gives nan when it starts on its plane; treat as outside that slab.
    t_near = np.nan_to_num(np.minimum(t1, t2), nan=np.inf).max(axis=-1)
    t_far = np.nan_to_num(np.maximum(t1, t2), nan=-np.inf).min(axis=-1)
    hit = (t_far >= np.maximum(t_near, 0.0)) & (t_near > 0.0)
    return np.where(hit, t_near, np.inf)


def cast_lidar(lidar_to_world: np.ndarray, boxes: np.ndarray, reflectivity: np.ndarray,
               rng: np.random.Generator, beams: int, azimuths: int) -> LidarScan:
    """Cast `beams` x `azimuths` rays from the LiDAR at pose `lidar_to_world` against the ground plane
    z = 0 and world `boxes` (B, 7); add range noise and dropouts, return points in the LiDAR frame."""
    elev = lidar_elevations(beams)
    az = np.arange(azimuths) * (2.0 * np.pi / azimuths)
    ring = np.repeat(np.arange(beams), azimuths)
    e, a = np.repeat(elev, azimuths), np.tile(az, beams)
    dirs_lidar = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1)
    dirs = dirs_lidar @ lidar_to_world[:3, :3].T
    origin = lidar_to_world[:3, 3]

    t_box = np.full((len(dirs), len(boxes)), np.inf)
    for b, rays in enumerate(_candidate_rays(lidar_to_world, boxes, elev, azimuths)):
        t_box[rays, b] = ray_box_distances(origin, dirs[rays], boxes[b:b + 1])[:, 0]
    with np.errstate(divide="ignore"):
        t_ground = np.where(dirs[:, 2] < -1e-6, -origin[2] / dirs[:, 2], np.inf)
    t_all = np.concatenate([t_box, t_ground[:, None]], axis=1)
    nearest = np.argmin(t_all, axis=1)
    t_hit = t_all[np.arange(len(dirs)), nearest]
    hit_box = np.where(nearest == len(boxes), -1, nearest)

    reach = np.minimum(t_ground, LIDAR_MAX_RANGE)[:, None]
    unoccluded = (t_box < reach).sum(axis=0)
    keep = (t_hit < LIDAR_MAX_RANGE) & (rng.random(len(dirs)) >= DROPOUT)
    visible = np.bincount(hit_box[keep & (hit_box >= 0)], minlength=len(boxes))

    rng_noise = rng.normal(0.0, RANGE_NOISE_M, size=len(dirs))
    dist = t_hit[keep] + rng_noise[keep]
    pts = dirs_lidar[keep] * dist[:, None]
    refl = np.append(np.asarray(reflectivity, dtype=np.float64), GROUND_REFLECTIVITY)[nearest[keep]]
    # Returns weaken with range and grazing angle; keep the 0-255 scale of nuScenes intensities.
    intensity = np.clip(refl * rng.uniform(0.7, 1.3, size=len(dist)) * np.clip(30.0 / (dist + 10.0), 0.3, 2.0),
                        0.0, 255.0)
    points = np.concatenate([pts, intensity[:, None], ring[keep, None]], axis=1).astype(np.float32)
    return LidarScan(points=points, hit_box=hit_box[keep], visible_rays=visible, unoccluded_rays=unoccluded)


def _candidate_rays(lidar_to_world: np.ndarray, boxes: np.ndarray, elev: np.ndarray,
                    azimuths: int) -> list[np.ndarray]:
    """Per box, the indices (into the beam-major ray grid) of the rays whose direction falls within the
    box's azimuth and elevation span seen from the LiDAR, plus one ray of margin: each box covers a
    small part of the sweep, so slab-testing only these rays is what keeps the caster fast."""
    world_to_lidar = np.linalg.inv(lidar_to_world)
    step = 2.0 * np.pi / azimuths
    beam_margin = np.abs(np.diff(elev)).max(initial=0.0) + 1e-3
    out = []
    for x, y, z, l, w, h, yaw in boxes:
        c, s = np.cos(yaw), np.sin(yaw)
        dx, dy = np.array([1, 1, -1, -1]) * l / 2, np.array([1, -1, 1, -1]) * w / 2
        foot = np.stack([x + c * dx - s * dy, y + s * dx + c * dy], axis=1)
        corners = np.concatenate([np.c_[foot, np.full(4, z - h / 2)], np.c_[foot, np.full(4, z + h / 2)]])
        local = corners @ world_to_lidar[:3, :3].T + world_to_lidar[:3, 3]
        # Azimuth span of a convex footprint seen from outside it is spanned by its corners.
        az = np.arctan2(local[:, 1], local[:, 0])
        centre_az = np.arctan2(local[:, 1].mean(), local[:, 0].mean())
        rel = np.angle(np.exp(1j * (az - centre_az)))
        first = int(np.floor((centre_az + rel.min()) / step)) - 1
        last = int(np.ceil((centre_az + rel.max()) / step)) + 1
        az_idx = np.arange(first, last + 1) % azimuths
        # Elevation: bound conservatively with the nearest and farthest horizontal distances.
        horiz = np.hypot(local[:, 0], local[:, 1])
        near = max(np.hypot(local[:, 0].mean(), local[:, 1].mean()) - np.hypot(l, w) / 2, 1e-3)
        el = np.arctan2(local[:, 2][None, :], np.array([[near], [horiz.max()]]))
        beams = np.flatnonzero((elev >= el.min() - beam_margin) & (elev <= el.max() + beam_margin))
        out.append((beams[:, None] * azimuths + az_idx[None, :]).ravel())
    return out


def points_in_boxes(points_world: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, B) bool: which of `points_world` (N, >=3) lie inside which world box (B, 7)."""
    rel = points_world[:, None, :3] - boxes[None, :, :3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    lx = c * rel[..., 0] + s * rel[..., 1]
    ly = -s * rel[..., 0] + c * rel[..., 1]
    half = boxes[:, 3:6] / 2.0
    return (np.abs(lx) <= half[:, 0]) & (np.abs(ly) <= half[:, 1]) & (np.abs(rel[..., 2]) <= half[:, 2])


