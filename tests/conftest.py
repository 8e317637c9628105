"""Session-wide fixtures shared by every test package."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_dataroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic nuScenes-format dataroot (v1.0-mini; scene-0061 in mini_train, scene-0103 in
    mini_val; 3 key frames each, 2 sweeps per key frame, 160x90 images), generated once per session."""
    from teacher_export.data.synthetic import generate_synthetic

    return generate_synthetic(tmp_path_factory.mktemp("synthetic") / "nuscenes", seed=0)
