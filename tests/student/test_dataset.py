"""The streaming dataset over cache + JPEGs: groups read, geometry, refusals, workers."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from cache_schema.errors import UserInputError
from student.data.dataset import CacheDataset, collate, needed_groups, open_cache
from student.train_config import load_train_config
from tests.student.run_paths import TINY_YAML


def _cfg(*overrides):
    return load_train_config(TINY_YAML, overrides)


def test_reads_only_the_groups_the_losses_need(train_cache):
    cfg = _cfg("loss.xfd.enabled=false", "loss.xat.enabled=false", "loss.xod.weight=0", "loss.xis.enabled=false",
               "loss.ds.enabled=false")
    assert needed_groups(cfg.student) == ("meta", "calib", "gt")
    reader = open_cache(train_cache, cfg.student)
    assert reader.groups == ("meta", "calib", "gt")
    sample = reader[0]
    assert not any(k.startswith(("lidar_teacher/", "image_teacher/", "depth/")) for k in sample.to_arrays())
    full = open_cache(train_cache, _cfg().student)
    assert set(full.groups) == {"meta", "calib", "gt", "depth", "lidar_teacher", "image_teacher"}


def test_sample_tensors_and_batch(train_cache, synthetic_dataroot):
    cfg = _cfg()
    ds = CacheDataset(open_cache(train_cache, cfg.student), synthetic_dataroot, cfg.student, cfg.data, seed=3)
    batch = collate([ds[0], ds[2]])
    n, (h, w) = cfg.student.num_cameras, cfg.student.image_size
    gh, gw = cfg.student.grid.shape
    assert batch.images.shape == (2, n, 3, h, w) and batch.images.dtype == torch.float32
    assert batch.depth_targets.shape == (2, n, h // 16, w // 16) and (batch.depth_targets > 0).any()
    assert batch.teacher.bev_features.shape == (2, 48, gh, gw)
    assert batch.teacher.inst_masks.shape[-2:] == (28, 28) and 0 <= batch.teacher.inst_masks.min() <= \
        batch.teacher.inst_masks.max() <= 1
    assert batch.indices == [0, 2]
    # intrinsics of the augmented image = ida @ K of the original.
    k = torch.from_numpy(np.asarray(ds.reader[0].calib.cam_intrinsics)).float()
    torch.testing.assert_close(batch.intrinsics[0], batch.ida[0] @ k)
    # The same (seed, epoch, index) draws the same augmentation; another epoch another one.
    again = ds[0]
    torch.testing.assert_close(again["images"], batch.images[0])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["bda"], batch.bda[0]) or not torch.equal(ds[0]["ida"], batch.ida[0])


def test_camera_to_lidar_matches_the_exporters_geometry(train_cache, synthetic_dataroot):
    from dataset_access.nuscenes.samples import NuScenesSamples

    reader = open_cache(train_cache, _cfg().student)
    samples = NuScenesSamples(synthetic_dataroot, "v1.0-mini", "mini_train", num_sweeps=0)
    for i in range(len(reader)):
        got = reader[i].calib.camera_to_lidar()
        info = samples[i]
        want = np.stack([info.camera_to_lidar(c) for c in reader.config.cameras])
        # The reader returns the float64 poses as float32: ~1e-4 m round-off at global coordinates.
        np.testing.assert_allclose(got, want, atol=5e-4)


def test_refuses_a_cache_with_samples_not_done(train_cache, tmp_path):
    copy = tmp_path / "partial.zarr"
    shutil.copytree(train_cache, copy)
    done = zarr.open_array(str(copy / "meta" / "done"), mode="r+")
    done[1] = 0
    with pytest.raises(UserInputError, match="not exported yet .*index 1"):
        open_cache(str(copy), _cfg().student)
    # Using only done samples is fine.
    open_cache(str(copy), _cfg().student, indices=[0, 2])


def test_refuses_a_cache_without_a_group_an_enabled_loss_needs(synthetic_dataroot, tmp_path):
    from teacher_export.export import export
    from tests.teacher_export.exports import small_export_options

    out = tmp_path / "no_image.zarr"
    export(small_export_options(synthetic_dataroot, out, image_teacher=None, limit=1), progress=False)
    with pytest.raises(UserInputError, match=r"image_teacher"):
        open_cache(str(out), _cfg().student)
    open_cache(str(out), _cfg("loss.xis.enabled=false").student)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_give_the_same_batches_as_the_main_process(train_cache, synthetic_dataroot, context):
    cfg = _cfg()
    ds = CacheDataset(open_cache(train_cache, cfg.student), synthetic_dataroot, cfg.student, cfg.data)
    ref = [collate([ds[i]]) for i in range(2)]
    loader = DataLoader(ds, batch_size=1, sampler=[0, 1], num_workers=1, collate_fn=collate,
                        multiprocessing_context=context)
    got = list(loader)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a.images, b.images)
        torch.testing.assert_close(a.teacher.regression, b.teacher.regression)
        torch.testing.assert_close(a.gt_boxes[0], b.gt_boxes[0])


def test_det_targets_built_in_the_workers_equal_the_criterions(train_cache, synthetic_dataroot):
    """The dataset builds CenterPoint targets per sample; merged into a batch they are exactly what
    `build_det_targets` builds from the batch's GT at once, so the loss is identical."""
    from student.losses import X3KDLoss
    from student.models.student import build_student
    from detection.det_targets import build_det_targets

    cfg = _cfg("loss.xis.enabled=false")
    ds = CacheDataset(open_cache(train_cache, cfg.student), synthetic_dataroot, cfg.student, cfg.data, seed=1)
    batch = collate([ds[(0, 0)], ds[(0, 2)]])
    assert batch.det_targets is not None
    s = cfg.student
    rebuilt = build_det_targets(batch.gt_boxes, batch.gt_labels, s.grid, s.class_setup,
                                s.losses.det.gaussian_overlap, s.losses.det.min_radius)
    for a, b in zip(batch.det_targets, rebuilt):
        for name in ("heatmap", "batch_index", "cell_index", "box_target"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    torch.manual_seed(0)
    model, criterion = build_student(s).eval(), X3KDLoss(s).eval()
    with torch.no_grad():
        out = model(batch)
        with_targets = criterion(out, batch)["loss_det"]
        from dataclasses import replace
        without = criterion(out, replace(batch, det_targets=rebuilt))["loss_det"]
    assert torch.equal(with_targets, without)


def test_xis_targets_built_in_the_workers_give_the_criterions_loss(train_cache, synthetic_dataroot):
    """X-IS pseudo labels selected and pasted per sample in the dataset equal those built for the whole
    batch from its teacher detections at once: the same loss, bit for bit."""
    from dataclasses import replace

    from student.losses import X3KDLoss
    from student.models.student import build_student
    from student.targets import xis_targets

    cfg = _cfg("loss.xfd.enabled=false", "loss.xat.enabled=false", "loss.xod.enabled=false")
    s = cfg.student
    ds = CacheDataset(open_cache(train_cache, s), synthetic_dataroot, s, cfg.data, seed=1)
    batch = collate([ds[(0, 0)], ds[(0, 1)]])
    assert batch.xis_targets is not None and len(batch.xis_targets) == 2 * s.num_cameras
    assert sum(len(t["boxes"]) for t in batch.xis_targets) > 0  # the test teacher's 0.05 threshold keeps some
    torch.manual_seed(0)
    model, criterion = build_student(s).train(), X3KDLoss(s).train()
    out = model(batch)
    torch.manual_seed(1)  # the RPN and RoI heads sample anchors and RoIs at random
    with_targets = criterion(out, batch)
    torch.manual_seed(1)
    teacher = batch.teacher
    whole_batch = xis_targets(teacher.inst_boxes.flatten(0, 1), teacher.inst_labels.flatten(0, 1),
                              teacher.inst_scores.flatten(0, 1), teacher.inst_masks.flatten(0, 1),
                              batch.ida.flatten(0, 1), tuple(s.image_size), s.losses.xis.score_threshold)
    without = criterion(out, replace(batch, xis_targets=whole_batch))
    for key in ("loss_xis", "xis/objectness", "xis/classifier", "xis/mask"):
        assert torch.equal(with_targets[key], without[key]), key


def test_teacher_maps_move_into_the_augmented_frame_batched_as_each_sample_would(train_cache, synthetic_dataroot):
    """The loader hands the LiDAR-teacher maps over as cached; the step warps the whole batch at once.
    That equals warping each sample with its own BEV augmentation, and the criterion gives the same
    losses whether it gets the batch moved or unmoved."""
    from dataclasses import replace

    from detection.bev_aug import teacher_validity
    from detection.centerpoint_coder import augment_teacher_maps, teacher_task_map, warp_task_map
    from student.losses import X3KDLoss
    from student.models.student import build_student

    cfg = _cfg("loss.xis.enabled=false")
    s = cfg.student
    ds = CacheDataset(open_cache(train_cache, s), synthetic_dataroot, s, cfg.data, seed=4)
    batch = collate([ds[(0, 0)], ds[(0, 1)]])
    assert not batch.teacher.in_augmented_frame and batch.teacher.valid is None
    assert not torch.equal(batch.bda[0], torch.eye(4))  # a real augmentation moves the maps
    moved = batch.with_teacher_in_augmented_frame(s.grid, s.class_setup)
    t, m = batch.teacher, moved.teacher
    assert m.in_augmented_frame and moved.with_teacher_in_augmented_frame(s.grid, s.class_setup) is moved
    for b in range(2):
        one = augment_teacher_maps(batch.bda[b], s.grid, t.bev_features[b], t.heatmaps[b], t.regression[b])
        for got, want in zip((m.bev_features[b], m.heatmaps[b], m.regression[b]), one):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        assert not torch.equal(m.heatmaps[b], t.heatmaps[b])
        assert torch.equal(m.valid[b], teacher_validity(batch.bda[b], s.grid))
        task = warp_task_map(teacher_task_map(t.heatmaps[b], s.class_setup)[None], batch.bda[b][None], s.grid)[0]
        assert torch.equal(m.reg_task[b], task)
    torch.manual_seed(0)
    model, criterion = build_student(s).eval(), X3KDLoss(s).eval()
    with torch.no_grad():
        out = model(batch)
        unmoved_losses, moved_losses = criterion(out, batch), criterion(out, moved)
    for key in ("loss_xfd", "loss_xat", "loss_xod"):
        assert torch.equal(unmoved_losses[key], moved_losses[key]), key
    assert replace(batch, teacher=None).with_teacher_in_augmented_frame(s.grid, s.class_setup).teacher is None
