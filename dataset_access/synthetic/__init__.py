"""Synthetic datasets of one small, consistent world: nuScenes format (LiDAR sweeps, six camera images,
five radars, nuScenes tables; `generate.py`) and the same worlds as a Waymo Open Dataset v2 split
(Parquet, five cameras, TOP range images; `waymo.py`)."""
from dataset_access.synthetic.generate import PRESETS, SyntheticSpec, generate_synthetic, write_dataset

__all__ = ["PRESETS", "SyntheticSpec", "generate_synthetic", "write_dataset"]
