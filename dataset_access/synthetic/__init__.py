"""A synthetic nuScenes-format dataset: a small, consistent world rendered into LiDAR sweeps, six
camera images and nuScenes tables (see `generate.py`)."""
from dataset_access.synthetic.generate import PRESETS, SyntheticSpec, generate_synthetic, write_dataset

__all__ = ["PRESETS", "SyntheticSpec", "generate_synthetic", "write_dataset"]
