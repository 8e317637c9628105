"""Voxelization against a literal transcription of mmcv's CPU loop (point by point, in order),
including the max_points / max_voxels truncation the fixture does not reach."""
import numpy as np
import pytest
import torch

from detection.voxelize import grid_size, hard_voxelize, voxelize_batch


def mmcv_loop(points: np.ndarray, voxel_size, pc_range, max_points, max_voxels):
    vs = np.float32(voxel_size)
    lo = np.float32(pc_range[:3])
    gx, gy, gz = grid_size(pc_range, voxel_size)
    index = {}
    coors, counts, voxels = [], [], []
    for p in points:
        c = np.floor((p[:3] - lo) / vs).astype(np.int64)
        if (c < 0).any() or c[0] >= gx or c[1] >= gy or c[2] >= gz:
            continue
        key = (int(c[2]), int(c[1]), int(c[0]))
        if key not in index:
            if len(coors) >= max_voxels:
                continue
            index[key] = len(coors)
            coors.append(key)
            counts.append(0)
            voxels.append(np.zeros((max_points, points.shape[1]), np.float32))
        v = index[key]
        if counts[v] < max_points:
            voxels[v][counts[v]] = p
            counts[v] += 1
    return np.array(voxels), np.array(coors, np.int32).reshape(-1, 3), np.array(counts, np.int32)


@pytest.mark.parametrize("max_points,max_voxels", [(3, 40), (20, 10_000), (1, 5)])
def test_matches_mmcv_loop_with_truncation(max_points, max_voxels):
    rng = np.random.default_rng(0)
    vs, pcr = [1.0, 1.0, 8.0], [-4.0, -4.0, -5.0, 4.0, 4.0, 3.0]
    # clustered points so voxels overflow, plus points outside the range that must be ignored
    pts = np.concatenate([rng.normal(0, 1.5, (600, 3)), rng.uniform(-6, 6, (100, 3))]).astype(np.float32)
    pts = np.concatenate([pts, rng.uniform(0, 1, (len(pts), 2)).astype(np.float32)], 1)
    ref_v, ref_c, ref_n = mmcv_loop(pts, vs, pcr, max_points, max_voxels)
    v, c, n = hard_voxelize(torch.from_numpy(pts), vs, pcr, max_points, max_voxels)
    assert c.shape[0] == min(max_voxels, len(ref_c))
    np.testing.assert_array_equal(c.numpy(), ref_c)
    np.testing.assert_array_equal(n.numpy(), ref_n)
    np.testing.assert_array_equal(v.numpy(), ref_v)


def test_batch_prefixes_sample_index_and_handles_empty_cloud():
    pts = torch.tensor([[0.5, 0.5, 0.0, 1, 0], [0.6, 0.4, 0.1, 2, 0], [-0.5, 0.5, 0.0, 3, 0]])
    vox = voxelize_batch([pts, torch.zeros(0, 5), pts[:1]], [1.0, 1.0, 8.0], [-2, -2, -5, 2, 2, 3], 4, 100)
    assert vox.coors.tolist() == [[0, 0, 2, 2], [0, 0, 2, 1], [2, 0, 2, 2]]
    assert vox.num_points.tolist() == [2, 1, 1]
    assert vox.voxels.shape == (3, 4, 5)
    assert vox.voxels[0, 1, 3].item() == 2  # second point of the first voxel, in input order
