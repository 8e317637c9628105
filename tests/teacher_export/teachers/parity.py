"""Running a CenterPoint parity fixture made by mmdet3d (../shared/fixtures/README.md), shared by the
pillar and voxel parity tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).parents[3]
SHARED = Path(os.environ.get("X3KD_SHARED_FIXTURES", REPO / ".." / "shared" / "fixtures"))


def run_fixture(path: Path):
    """(fixture, model, outputs, detections of sample 0) for a fixture file; skips when it is absent."""
    from teacher_export.teachers.centerpoint.model import CenterPoint

    if not path.is_file():
        pytest.skip(f"{path} absent")
    fx = torch.load(path, map_location="cpu", weights_only=True)
    model = CenterPoint.from_mmdet3d_config(fx["model_config"]).eval()
    model.load_state_dict(fx["state_dict"], strict=True)
    with torch.inference_mode():
        out = model([fx["points"]])
        dets = model.decode(out.head)
    return fx, model, out, dets[0]
