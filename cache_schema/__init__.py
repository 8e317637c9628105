"""x3kd cache_schema: the contract between teacher export and student training.

The store layout (`layout.ARRAYS`), its quantization, versioning and metadata, and the three ways to
touch a store: `CacheWriter`, `CacheReader`, `validate`. numpy + zarr + numcodecs only.
"""
from .errors import UserInputError
from .grid import NUSCENES_CLASSES, NUSCENES_TASKS, BevGrid, ClassSetup
from .layout import ARRAYS, CAMERA_NAMES, REGRESSION_CHANNELS, SCHEMA_VERSION, ArraySpec, StoreConfig
from .reader import CacheReader
from .store import StoreMeta
from .validate import ValidationReport, validate
from .writer import CacheWriter

__all__ = [
    "ARRAYS", "CAMERA_NAMES", "NUSCENES_CLASSES", "NUSCENES_TASKS", "REGRESSION_CHANNELS", "SCHEMA_VERSION",
    "ArraySpec", "BevGrid", "CacheReader", "CacheWriter", "ClassSetup", "StoreConfig", "StoreMeta",
    "UserInputError", "ValidationReport", "validate",
]
