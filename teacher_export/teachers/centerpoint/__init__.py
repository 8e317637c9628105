"""CenterPoint (pillar) LiDAR teacher in plain PyTorch, loading mmdet3d checkpoints without mmcv."""
from teacher_export.teachers.centerpoint.model import CenterPoint
from teacher_export.teachers.centerpoint.teacher import CenterPointTeacher

__all__ = ["CenterPoint", "CenterPointTeacher"]
