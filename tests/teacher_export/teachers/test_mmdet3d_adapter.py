"""The mmdet3d adapter (`--lidar-teacher mmdet3d-centerpoint`) run for real on a voxel config: it agrees
with the built-in voxel teacher given the same weights, and an export through it validates. Needs the
mmdet3d extra (mmcv built for this torch, mmdet, mmdet3d, spconv); `make test` installs it when
../shared/wheels is present, elsewhere these tests skip saying so."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

mmdet3d = pytest.importorskip("mmdet3d", reason="the mmdet3d extra is not installed (mmcv has no wheels: see README "
                                                "'Optional extras'; `make test` installs it when ../shared/wheels "
                                                "is present)")
pytest.importorskip("spconv", reason="spconv is not installed (pip install 'x3kd[voxel]')")

REPO = Path(__file__).parents[3]
SHARED = Path(os.environ.get("X3KD_SHARED_FIXTURES", REPO / ".." / "shared" / "fixtures"))
VOXEL01 = Path(mmdet3d.__file__).parent / ".mim" / "configs" / "centerpoint" / \
    "centerpoint_voxel01_second_secfpn_8xb4-cyclic-20e_nus-3d.py"


def test_voxel01_through_mmdet3d_matches_the_builtin_voxel_teacher(tmp_path):
    from teacher_export.teachers.registry import build_lidar_teacher

    path = SHARED / "centerpoint_voxel01_full.pt"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    fx = torch.load(path, map_location="cpu", weights_only=True)
    # The sparse kernels in mmcv's own layout (kD, kH, kW, in, out) and no state_dict metadata: what a
    # checkpoint trained without spconv holds. mmdet3d converts it on load, and so must we.
    state = {k: (v.permute(1, 2, 3, 4, 0).contiguous() if v.ndim == 5 else v) for k, v in fx["state_dict"].items()}
    ckpt = tmp_path / "voxel01_mmcv_layout.pth"
    torch.save({"meta": {"mmdet3d_version": "1.4.0"}, "state_dict": state}, ckpt)
    theirs = build_lidar_teacher("mmdet3d-centerpoint", checkpoint=ckpt, config=str(VOXEL01))
    ours = build_lidar_teacher("centerpoint-voxel01", checkpoint=ckpt)
    assert theirs.grid == ours.grid and theirs.bev_channels == ours.bev_channels == 512
    pts = fx["points"].numpy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # mmdet3d runs spconv on every thread, where its CPU kernels are not deterministic
    try:
        a, b = ours([pts])[0], theirs([pts])[0]
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(a.bev_features, b.bev_features, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.heatmaps, b.heatmaps, atol=1e-4)
    np.testing.assert_allclose(a.regression, b.regression, atol=1e-3)
    # Decoded boxes: the same set (NMS may order near-equal scores differently, and boxes of different
    # classes can share a centre, so each is matched within its class).
    assert len(a.boxes) == len(b.boxes) > 0
    distance = np.linalg.norm(b.boxes[:, None, :2] - a.boxes[None, :, :2], axis=-1)
    distance[b.labels[:, None] != a.labels[None, :]] = np.inf
    nearest = distance.argmin(1)
    np.testing.assert_allclose(a.boxes[nearest], b.boxes, atol=2e-3)


def test_a_voxel_config_through_the_adapter_exports_a_store_that_validates(synthetic_dataroot, tmp_path):
    from cache_schema import CacheReader
    from teacher_export.cli import main

    out = tmp_path / "mmdet3d_voxel.zarr"
    r = CliRunner().invoke(main, ["export", "--dataroot", str(synthetic_dataroot), "--version", "v1.0-mini",
                                  "--split", "mini_train", "--out", str(out), "--lidar-teacher", "mmdet3d-centerpoint",
                                  "--lidar-config", str(VOXEL01), "--image-teacher", "none", "--random-init",
                                  "--num-sweeps", "2", "--limit", "2"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["validate", str(out)])
    assert r.exit_code == 0, r.output
    reader = CacheReader(str(out))
    assert reader.config.bev_channels == 512 and reader.config.grid.shape == (128, 128) and len(reader) == 2
    assert reader.meta.provenance["lidar_teacher"]["config"]["implementation"].startswith("mmdet3d")


def test_a_checkpoint_written_by_the_builtin_voxel_teacher_loads_in_mmdet3d(tmp_path):
    """spconv-2 kernels are marked version 2 in the state_dict metadata, as mmdet3d expects."""
    import json

    from teacher_export.teachers.centerpoint.model import CenterPoint
    from teacher_export.teachers.registry import build_lidar_teacher

    torch.manual_seed(0)
    ours = CenterPoint.from_mmdet3d_config(json.loads(
        (REPO / "tests" / "fixtures" / "centerpoint_voxel01_small_config.json").read_text()))
    ckpt = tmp_path / "ours.pth"
    torch.save({"state_dict": ours.state_dict()}, ckpt)
    cfg = tmp_path / "small.py"
    cfg.write_text(f"_base_ = [{str(VOXEL01)!r}]\n" + "model = " + repr(_small_overrides()) + "\n")
    theirs = build_lidar_teacher("mmdet3d-centerpoint", checkpoint=ckpt, config=str(cfg))
    name = "pts_middle_encoder.conv_input.0.weight"
    torch.testing.assert_close(theirs.model.state_dict()[name], ours.state_dict()[name])


def _small_overrides() -> dict:
    """The small voxel fixture's model settings as an mmdet3d config override."""
    import json

    small = json.loads((REPO / "tests" / "fixtures" / "centerpoint_voxel01_small_config.json").read_text())
    keep = ("data_preprocessor", "pts_middle_encoder", "pts_backbone", "pts_neck")
    out = {k: small[k] for k in keep}
    out["pts_middle_encoder"]["order"] = tuple(out["pts_middle_encoder"]["order"])  # mmdet3d asserts a tuple
    head = small["pts_bbox_head"]
    out["pts_bbox_head"] = {"in_channels": head["in_channels"], "share_conv_channel": head["share_conv_channel"],
                            "separate_head": {"head_conv": head["separate_head"]["head_conv"]},
                            "bbox_coder": {"pc_range": head["bbox_coder"]["pc_range"]}}
    return out
