"""Paths the dataset/train/eval tests share (the `train_cache` fixture is in conftest.py)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "configs" / "tiny.yaml"
