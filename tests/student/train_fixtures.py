"""Session fixtures for the dataset/train/eval tests: one cache of the synthetic mini_train split made
by both (randomly initialised, seeded) teachers on the 64x64 grid that configs/tiny.yaml uses."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_YAML = REPO / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def train_cache(synthetic_dataroot, tmp_path_factory) -> str:
    from teacher_export.export import export
    from tests.teacher_export.exports import small_export_options

    out = tmp_path_factory.mktemp("train_cache") / "cache.zarr"
    export(small_export_options(synthetic_dataroot, out), progress=False)
    return str(out)
