"""Student inputs: the streaming cache dataset (training) and the camera pipeline shared with eval."""
from .cameras import CameraInputs, load_camera_inputs
from .dataset import CacheDataset, DataConfig, collate, needed_groups, open_cache

__all__ = ["CacheDataset", "CameraInputs", "DataConfig", "collate", "load_camera_inputs",
           "needed_groups", "open_cache"]
