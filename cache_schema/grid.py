"""The BEV grid and the detection class list that teacher, cache and student must agree on."""
from __future__ import annotations

from dataclasses import dataclass, field

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
