"""The synthetic world of one scene: an ego car driving an arc over a flat ground plane (z = 0) among
upright 3D boxes that stand still or move at constant velocity.

Everything is an analytic function of time, so ego poses, sweeps, camera exposures and annotations
taken at different timestamps agree exactly, and the devkit's finite-difference box velocity equals
the true one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache_schema.frames import make_transform, rotation_z


@dataclass(frozen=True)
class ObjectClass:
    """A kind of object: its nuScenes category, mean size (w, l, h as in nuScenes' `size`), how fast it
    may move, how it looks in the cameras (base RGB colour and horizontal bands drawn on its side faces
    as (bottom, top) height fractions + colour) and its LiDAR reflectivity (0-255 intensity scale)."""

    category: str
    size_wlh: tuple[float, float, float]
    max_speed: float
    colour: tuple[int, int, int]
    bands: tuple[tuple[float, float, tuple[int, int, int]], ...]
    reflectivity: float
    weight: float
    # Farthest from the ego car the object may be at any time of its scene: inside the devkit's
    # per-class detection range (detection_cvpr_2019: 50 m vehicles, 40 m pedestrians and cycles,
    # 30 m cones and barriers) with a margin, so every object is seen and evaluated.
    max_range: float
    # Attribute names when moving / when still (nuScenes allows at most one per annotation).
    moving_attribute: str | None
    still_attribute: str | None


_WINDOWS = (0.6, 0.88, (45, 55, 70))
OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("vehicle.car", (1.95, 4.62, 1.73), 9.0, (200, 40, 40), (_WINDOWS,), 60.0, 0.24, 46.0,
                "vehicle.moving", "vehicle.parked"),
    ObjectClass("vehicle.truck", (2.51, 6.93, 2.84), 7.0, (40, 70, 200), ((0.55, 0.8, (45, 55, 70)),),
                50.0, 0.08, 46.0, "vehicle.moving", "vehicle.stopped"),
    ObjectClass("vehicle.construction", (2.85, 6.37, 3.19), 2.0, (230, 190, 30), ((0.1, 0.25, (30, 30, 30)),),
                45.0, 0.05, 46.0, "vehicle.moving", "vehicle.parked"),
    ObjectClass("vehicle.bus.rigid", (2.94, 10.5, 3.47), 7.0, (40, 160, 70),
                ((0.45, 0.75, (45, 55, 70)), (0.9, 1.0, (230, 230, 230))), 55.0, 0.05, 46.0,
                "vehicle.moving", "vehicle.stopped"),
    ObjectClass("vehicle.trailer", (2.90, 12.29, 3.87), 5.0, (120, 80, 50), ((0.0, 0.15, (30, 30, 30)),),
                40.0, 0.05, 46.0, "vehicle.moving", "vehicle.parked"),
    ObjectClass("movable_object.barrier", (2.53, 0.50, 0.98), 0.0, (235, 235, 235),
                ((0.25, 0.5, (210, 30, 30)), (0.75, 1.0, (210, 30, 30))), 90.0, 0.10, 27.0, None, None),
    ObjectClass("vehicle.motorcycle", (0.77, 2.11, 1.47), 8.0, (150, 50, 170), ((0.75, 1.0, (20, 20, 20)),),
                55.0, 0.06, 36.0, "cycle.with_rider", "cycle.without_rider"),
    ObjectClass("vehicle.bicycle", (0.60, 1.70, 1.28), 4.0, (40, 200, 210), ((0.0, 0.4, (25, 25, 25)),),
                35.0, 0.06, 36.0, "cycle.with_rider", "cycle.without_rider"),
    ObjectClass("human.pedestrian.adult", (0.67, 0.73, 1.77), 1.5, (60, 70, 150),
                ((0.45, 0.85, (230, 140, 80)), (0.88, 1.0, (240, 195, 160))), 30.0, 0.18, 36.0,
                "pedestrian.moving", "pedestrian.standing"),
    ObjectClass("movable_object.trafficcone", (0.41, 0.41, 1.07), 0.0, (255, 110, 0),
                ((0.45, 0.65, (250, 250, 250)),), 100.0, 0.10, 27.0, None, None),
    # Not a detection class: the reader and the devkit's evaluation must drop it.
    ObjectClass("movable_object.pushable_pullable", (0.62, 0.75, 1.05), 0.0, (120, 120, 110), (),
                40.0, 0.03, 27.0, None, None),
)

EGO_RADIUS = 2.6  # half the diagonal of a Renault Zoe, plus margin


@dataclass(frozen=True)
class EgoTrajectory:
    """Ego pose over time: a circular arc (straight when `yaw_rate` is 0) on the ground plane."""

    start_xy: tuple[float, float]
    start_yaw: float
    speed: float
    yaw_rate: float

    def state(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(xy (..., 2), yaw (...)) at time(s) `t` seconds after the scene start."""
        t = np.asarray(t, dtype=np.float64)
        yaw = self.start_yaw + self.yaw_rate * t
        if abs(self.yaw_rate) < 1e-9:
            dx = self.speed * t * np.cos(self.start_yaw)
            dy = self.speed * t * np.sin(self.start_yaw)
        else:
            radius = self.speed / self.yaw_rate
            dx = radius * (np.sin(yaw) - np.sin(self.start_yaw))
            dy = -radius * (np.cos(yaw) - np.cos(self.start_yaw))
        xy = np.stack([self.start_xy[0] + dx, self.start_xy[1] + dy], axis=-1)
        return xy, yaw

    def pose(self, t: float) -> np.ndarray:
        """4x4 ego->world transform at time `t` (the ego origin is on the ground, so z = 0)."""
        xy, yaw = self.state(t)
        return make_transform(rotation_z(float(yaw)), (float(xy[0]), float(xy[1]), 0.0))


@dataclass(frozen=True)
class Actor:
    """An object moving at constant velocity along its heading; `size_wlh` as nuScenes stores it."""

    class_index: int  # into OBJECT_CLASSES
    start_xy: tuple[float, float]
    yaw: float
    speed: float
    size_wlh: tuple[float, float, float]
    colour: tuple[int, int, int]

    @property
    def object_class(self) -> ObjectClass:
        return OBJECT_CLASSES[self.class_index]

    @property
    def velocity(self) -> np.ndarray:
        return self.speed * np.array([np.cos(self.yaw), np.sin(self.yaw)])

    def xy(self, t: np.ndarray | float) -> np.ndarray:
        return np.asarray(self.start_xy) + np.multiply.outer(np.asarray(t, dtype=np.float64), self.velocity)

    @property
    def radius(self) -> float:
        return 0.5 * float(np.hypot(self.size_wlh[0], self.size_wlh[1]))


def boxes_at(actors: list[Actor], t: float) -> np.ndarray:
    """(B, 7) world boxes (x, y, z_centre, l, w, h, yaw) of `actors` at time `t`."""
    if not actors:
        return np.zeros((0, 7))
    rows = []
    for a in actors:
        x, y = a.xy(t)
        w, l, h = a.size_wlh
        rows.append((x, y, h / 2.0, l, w, h, a.yaw))
    return np.array(rows, dtype=np.float64)


CLASS_MIXES = ("nuscenes", "uniform")


def class_weights(mix: str) -> np.ndarray:
    """Drawing probability of each of OBJECT_CLASSES: "nuscenes" (roughly nuScenes' class frequencies:
    cars and pedestrians common, buses and trailers rare) or "uniform" (every detection class equally
    often; the non-detection distractor keeps its share), so that a small dataset has enough examples
    of every class for each one's AP to mean something."""
    if mix not in CLASS_MIXES:
        raise ValueError(f"class mix {mix!r}: expected one of {CLASS_MIXES}")
    weights = np.array([c.weight for c in OBJECT_CLASSES])
    if mix == "uniform":
        detection = np.array([c.category != "movable_object.pushable_pullable" for c in OBJECT_CLASSES])
        weights = np.where(detection, weights[detection].sum() / detection.sum(), weights)
    return weights / weights.sum()


def sample_world(rng: np.random.Generator, times: np.ndarray, num_objects: int,
                 start_xy: tuple[float, float], max_range: float | None = None,
                 class_mix: str = "nuscenes") -> tuple[EgoTrajectory, list[Actor]]:
    """Draw an ego trajectory and up to `num_objects` actors that, at every one of `times` (seconds), are
    within their class's `max_range` (and within `max_range` metres, when given) of the ego car and
    overlap neither it nor each other. The first actors cover the classes one each, then classes are
    drawn by `class_weights(class_mix)`; a class that cannot be placed (crowded scene) is retried."""
    ego = EgoTrajectory(start_xy=start_xy, start_yaw=float(rng.uniform(-np.pi, np.pi)),
                        speed=float(rng.choice([0.0, rng.uniform(2.0, 9.0)], p=[0.15, 0.85])),
                        yaw_rate=float(rng.uniform(-0.08, 0.08)))
    ego_xy, ego_yaw = ego.state(times)
    weights = class_weights(class_mix)
    # Every class once (in random order) before drawing by frequency, so that even a small split has
    # examples of all classes and per-class metrics are defined.
    first_of_each = rng.permutation(len(OBJECT_CLASSES))
    actors: list[Actor] = []
    for _ in range(num_objects * 20):  # rejection sampling: give up on crowded scenes
        if len(actors) == num_objects:
            break
        if len(actors) < len(first_of_each):
            ci = int(first_of_each[len(actors)])
        else:
            ci = int(rng.choice(len(OBJECT_CLASSES), p=weights))
        cls = OBJECT_CLASSES[ci]
        reach = cls.max_range if max_range is None else min(cls.max_range, max_range)
        size = tuple(float(s) for s in np.asarray(cls.size_wlh) * rng.uniform(0.88, 1.12, size=3))
        anchor = int(rng.integers(len(times)))
        dist = float(rng.uniform(EGO_RADIUS + 2.0, 0.8 * reach))
        bearing = float(rng.uniform(-np.pi, np.pi))
        pos = ego_xy[anchor] + dist * np.array([np.cos(bearing), np.sin(bearing)])
        moving = cls.max_speed > 0 and rng.random() < 0.6
        speed = float(rng.uniform(0.3, 1.0) * cls.max_speed) if moving else 0.0
        if cls.category.startswith("vehicle"):
            # Traffic runs along (or against) the ego's direction of travel.
            yaw = float(ego_yaw[anchor] + rng.choice([0.0, np.pi]) + rng.normal(0.0, 0.15))
        else:
            yaw = float(rng.uniform(-np.pi, np.pi))
        yaw = float(np.arctan2(np.sin(yaw), np.cos(yaw)))
        start = pos - speed * np.array([np.cos(yaw), np.sin(yaw)]) * times[anchor]
        colour = tuple(int(c) for c in np.clip(np.asarray(cls.colour) * rng.uniform(0.8, 1.15), 0, 255))
        cand = Actor(ci, (float(start[0]), float(start[1])), yaw, speed, size, colour)
        track = cand.xy(times)
        ego_dist = np.linalg.norm(track - ego_xy, axis=-1)
        if np.any(ego_dist < cand.radius + EGO_RADIUS + 0.5) or np.any(ego_dist > reach):
            continue
        if any(np.any(np.linalg.norm(track - other.xy(times), axis=-1) < cand.radius + other.radius + 0.3)
               for other in actors):
            continue
        actors.append(cand)
    return ego, actors
