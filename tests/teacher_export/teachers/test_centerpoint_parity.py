"""Parity with mmdet3d 1.4 itself: fixtures made by running mmdet3d's CenterPoint pillar02 (see
`tests/fixtures` and `../shared/fixtures/README.md`). 'small' ships with the repo; 'full' (the real
pillar02 size) is read from `../shared/fixtures` next to the repo (or $X3KD_SHARED_FIXTURES) and
skipped only when that folder is absent."""
import pytest
import torch

from tests.teacher_export.teachers.parity import REPO, SHARED, run_fixture

FIXTURES = {
    "small": REPO / "tests" / "fixtures" / "centerpoint_pillar02_small.pt",
    "full": SHARED / "centerpoint_pillar02_full.pt",
}


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return ((ours - ref).norm() / ref.norm().clamp(min=1e-12)).item()


@pytest.fixture(scope="module", params=["small", "full"])
def run(request):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return (request.param, *run_fixture(FIXTURES[request.param]))
    finally:
        torch.set_num_threads(threads)  # later tests in this worker keep their thread count


def test_state_dict_keys_and_shapes_are_mmdet3ds(run):
    _, fx, model, _, _ = run
    ours = model.state_dict()
    assert set(ours) == set(fx["state_dict"])
    assert all(ours[k].shape == v.shape for k, v in fx["state_dict"].items())


def test_voxelization_equals_mmcv(run):
    _, fx, _, out, _ = run
    assert out.voxels.coors.dtype == torch.int32
    assert torch.equal(out.voxels.coors, fx["voxels"]["coors"])
    assert torch.equal(out.voxels.num_points, fx["voxels"]["num_points"])


def test_neck_matches(run):
    _, fx, _, out, _ = run
    neck = out.bev_features[0][fx["neck_channels"]]
    assert neck.shape == fx["neck"].shape
    assert rel_err(neck, fx["neck"]) <= 1e-4


def test_all_task_heads_match(run):
    _, fx, _, out, _ = run
    assert len(out.head) == len(fx["head"]) == 6
    for task, (ours, ref) in enumerate(zip(out.head, fx["head"])):
        assert set(ours) == set(ref)
        for k, r in ref.items():
            assert ours[k][0].shape == r.shape, (task, k)
            assert rel_err(ours[k][0], r) <= 1e-4, (task, k)


def test_decoded_boxes_match_mmdet3d_predict(run):
    _, fx, _, _, det = run
    pred = fx["pred"]
    assert len(det) == len(pred["scores_3d"]) > 0
    boxes = det.boxes.clone()
    boxes[:, 2] -= boxes[:, 5] / 2  # ours: gravity centre; mmdet3d's predict: bottom centre
    torch.testing.assert_close(boxes, pred["bboxes_3d"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(det.scores, pred["scores_3d"], atol=1e-5, rtol=1e-5)
    assert torch.equal(det.labels, pred["labels_3d"].long())
