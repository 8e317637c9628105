"""CenterHead: mmdet3d parameter names and outputs, checked against mmdet3d's own run (fixture)."""
from pathlib import Path

import pytest
import torch

from cache_schema.grid import NUSCENES_TASKS
from detection.center_head import CenterHead, concat_task_heatmaps

FIXTURE = Path(__file__).parents[1] / "fixtures" / "centerpoint_pillar02_small.pt"
PREFIX = "pts_bbox_head."


@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, map_location="cpu", weights_only=False)


def test_head_loads_mmdet3d_weights_strictly_and_reproduces_outputs(fixture):
    head = CenterHead(48, NUSCENES_TASKS, share_conv_channel=16, head_conv=16).eval()
    sd = {k[len(PREFIX):]: v for k, v in fixture["state_dict"].items() if k.startswith(PREFIX)}
    head.load_state_dict(sd, strict=True)
    with torch.no_grad():
        out = head(fixture["neck"][None])
    assert len(out) == len(NUSCENES_TASKS)
    for ours, ref in zip(out, fixture["head"]):
        assert set(ours) == set(ref) == {"reg", "height", "dim", "rot", "vel", "heatmap"}
        for k, r in ref.items():
            o = ours[k][0]
            assert o.shape == r.shape, k
            rel = (o - r).norm() / r.norm()
            assert rel < 1e-5, (k, rel.item())


def test_head_shapes_and_heatmap_prior():
    head = CenterHead(8, NUSCENES_TASKS, share_conv_channel=4, head_conv=4).eval()
    out = head(torch.zeros(2, 8, 6, 5))
    assert [o["heatmap"].shape[1] for o in out] == [1, 2, 2, 1, 2, 2]
    assert out[0]["dim"].shape == (2, 3, 6, 5) and out[0]["vel"].shape == (2, 2, 6, 5)
    hm = concat_task_heatmaps(out)
    assert hm.shape == (2, 10, 6, 5)
    assert head.class_names[:3] == ("car", "truck", "construction_vehicle")
    # every heatmap's last conv starts at the focal-loss prior -2.19
    for t in head.task_heads:
        assert torch.allclose(t.heatmap[-1].bias, torch.full_like(t.heatmap[-1].bias, -2.19))


def test_head_rejects_missing_keys():
    head = CenterHead(8, NUSCENES_TASKS, share_conv_channel=4, head_conv=4)
    sd = head.state_dict()
    sd.pop("task_heads.5.heatmap.1.bias")
    with pytest.raises(RuntimeError, match="task_heads.5.heatmap.1.bias"):
        head.load_state_dict(sd, strict=True)
