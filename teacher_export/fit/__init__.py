"""Briefly fit the built-in teachers on a dataroot's train split (`x3kd-cache fit-teacher`).

No trained teacher weights can be downloaded in the demo setting, and distilling from random teachers
teaches nothing; so the demo first fits a small CenterPoint (`lidar.fit_lidar_teacher`) and a light
Mask R-CNN (`image.fit_image_teacher`) on the synthetic train split, then `x3kd-cache export` runs them
from the checkpoints written here. `presets` holds the demo's options.
"""
from teacher_export.fit.options import FitOptions, FitResult

__all__ = ["FitOptions", "FitResult"]
