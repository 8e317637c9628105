"""The BEV grid and the detection class list that teacher, cache and student must agree on.

`BevGrid` is the one home of BEV cell arithmetic (metric <-> cell coordinates, cell centres, what is on
the grid); its methods take floats, numpy arrays or torch tensors alike (plain arithmetic), so the
student's targets, augmentation, box decoding and view transform, the export and the pictures all use
it without this package importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# nuScenes detection classes in the order CenterPoint's nuScenes configs use.
NUSCENES_CLASSES: tuple[str, ...] = (
    "car", "truck", "construction_vehicle", "bus", "trailer",
    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone",
)
# CenterPoint's six task groups (one heatmap head per group).
NUSCENES_TASKS: tuple[tuple[str, ...], ...] = (
    ("car",), ("truck", "construction_vehicle"), ("bus", "trailer"),
    ("barrier",), ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone"),
)


@dataclass(frozen=True)
class BevGrid:
    """A metric BEV grid: `point_cloud_range` (x_min, y_min, z_min, x_max, y_max, z_max) in metres,
    `voxel_size` of the LiDAR voxelization and `out_size_factor`, the stride from voxels to BEV cells."""

    point_cloud_range: tuple[float, float, float, float, float, float] = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
    voxel_size: tuple[float, float, float] = (0.2, 0.2, 8.0)
    out_size_factor: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "point_cloud_range", tuple(float(v) for v in self.point_cloud_range))
        object.__setattr__(self, "voxel_size", tuple(float(v) for v in self.voxel_size))
        object.__setattr__(self, "out_size_factor", int(self.out_size_factor))

    @property
    def cell_size(self) -> tuple[float, float]:
        return (self.voxel_size[0] * self.out_size_factor, self.voxel_size[1] * self.out_size_factor)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the BEV maps: H along y, W along x."""
        r = self.point_cloud_range
        w = round((r[3] - r[0]) / self.voxel_size[0] / self.out_size_factor)
        h = round((r[4] - r[1]) / self.voxel_size[1] / self.out_size_factor)
        return (h, w)

    def cell_coords(self, x, y):
        """Continuous (column, row) of metric (x, y): cell (j, i) spans [j, j + 1) x [i, i + 1), its
        centre at (j + 0.5, i + 0.5); floor() gives the cell a point falls in."""
        r = self.point_cloud_range
        cx, cy = self.cell_size
        return (x - r[0]) / cx, (y - r[1]) / cy

    def metric_coords(self, col, row):
        """Metric (x, y) of continuous cell coordinates, the inverse of `cell_coords`. Computed in
        mmdet3d's order (col * out_size_factor * voxel + x_min), so that boxes decoded from a CenterHead
        agree with mmdet3d's to the last bit."""
        r = self.point_cloud_range
        return (col * self.out_size_factor * self.voxel_size[0] + r[0],
                row * self.out_size_factor * self.voxel_size[1] + r[1])

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Metric x of every column's centre (W,) and y of every row's centre (H,), float64."""
        h, w = self.shape
        return self.metric_coords(np.arange(w) + 0.5, np.arange(h) + 0.5)

    def contains(self, x, y):
        """Whether metric (x, y) lies on the grid: x_min <= x < x_max and y_min <= y < y_max."""
        r = self.point_cloud_range
        return (x >= r[0]) & (x < r[3]) & (y >= r[1]) & (y < r[4])

    def to_json(self) -> dict:
        return {"point_cloud_range": list(self.point_cloud_range), "voxel_size": list(self.voxel_size),
                "out_size_factor": self.out_size_factor}

    @classmethod
    def from_json(cls, d: dict) -> "BevGrid":
        return cls(tuple(d["point_cloud_range"]), tuple(d["voxel_size"]), int(d["out_size_factor"]))


@dataclass(frozen=True)
class ClassSetup:
    """Class names and their CenterPoint task grouping."""

    classes: tuple[str, ...] = NUSCENES_CLASSES
    tasks: tuple[tuple[str, ...], ...] = field(default=NUSCENES_TASKS)

    def __post_init__(self) -> None:
        flat = [c for t in self.tasks for c in t]
        if sorted(flat) != sorted(self.classes):
            raise ValueError(f"task grouping {self.tasks} does not cover classes {self.classes} exactly once")

    def to_json(self) -> dict:
        return {"classes": list(self.classes), "tasks": [list(t) for t in self.tasks]}

    @classmethod
    def from_json(cls, d: dict) -> "ClassSetup":
        return cls(tuple(d["classes"]), tuple(tuple(t) for t in d["tasks"]))
