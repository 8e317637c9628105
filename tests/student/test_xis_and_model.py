"""X-IS pseudo-labels, and the tiny student end to end: every loss, KD-only mode, inference size."""
import subprocess
import sys

import pytest
import torch

from student.image_aug import ImageAugParams, image_aug_matrix
from student.batch import StudentBatch, TeacherTargets
from tests.student.configs import small_student_config
from student.losses import X3KDLoss, total_loss
from student.targets import xis_targets
from detection.masks import paste_masks
from student.models.student import build_student
from student.targets import depth_image_to_feature_grid


def test_xis_targets_threshold_labels_and_augmented_boxes():
    ida = image_aug_matrix(ImageAugParams(0.5, (0, 0), True, 0.0, (64, 176)), (128, 352))
    boxes = torch.tensor([[[10.0, 20.0, 50.0, 60.0], [0, 0, 5, 5], [100, 10, 140, 50]]])
    labels = torch.tensor([[3, 1, -1]])
    scores = torch.tensor([[0.9, 0.2, 0.99]])
    masks = torch.ones(1, 3, 28, 28)
    (t,) = xis_targets(boxes, labels, scores, masks, ida[None], (64, 176), score_threshold=0.5)
    assert t["labels"].tolist() == [4]  # padding and low score dropped, 1-based labels
    assert torch.allclose(t["boxes"], torch.tensor([[176 - 25.0, 10.0, 176 - 5.0, 30.0]]), atol=1e-4)
    m = t["masks"][0]
    assert m.shape == (64, 176)
    assert m[12:28, 153:169].min() > 0.99 and m[:, :140].max() == 0 and m[40:].max() == 0


def test_paste_masks_with_ida_agrees_without_and_follows_a_flip():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 28, 28, generator=g)
    boxes = torch.tensor([[3.2, 1.5, 30.7, 17.0], [-4.0, 6.0, 12.0, 25.0]])
    ident = torch.eye(3)
    assert torch.allclose(paste_masks(masks, boxes, (20, 40), ident), paste_masks(masks, boxes, (20, 40)),
                          atol=1e-5)
    # A horizontal flip of the image = the mirrored masks pasted into mirrored boxes.
    flip = image_aug_matrix(ImageAugParams(1.0, (0, 0), True, 0.0, (20, 40)), (20, 40))
    mirrored = torch.stack([40 - boxes[:, 2], boxes[:, 1], 40 - boxes[:, 0], boxes[:, 3]], 1)
    assert torch.allclose(paste_masks(masks, boxes, (20, 40), flip),
                          paste_masks(masks.flip(-1), mirrored, (20, 40)), atol=1e-5)


def _synthetic_batch(cfg, b=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = cfg.num_cameras
    h, w = cfg.image_size
    orig = (2 * h, 2 * w)
    ida = image_aug_matrix(ImageAugParams(0.5, (0, 0), False, 0.0, (h, w)), orig).expand(b, n, 3, 3).clone()
    k = torch.tensor([[2 * w * 0.6, 0, w], [0, 2 * w * 0.6, h], [0, 0, 1.0]])
    intr = (ida @ k).clone()
    c2l = torch.eye(4).repeat(b, n, 1, 1)
    for i in range(n):
        a = torch.tensor(2 * torch.pi * i / n)
        c2l[:, i, :3, :3] = torch.tensor([[a.sin(), 0, a.cos()], [-a.cos(), 0, a.sin()], [0, -1, 0]])
    depth_img = torch.rand(b * n, orig[0] // 8, orig[1] // 8, generator=g) * 15
    depth_img[torch.rand(depth_img.shape, generator=g) > 0.2] = 0
    depth = depth_image_to_feature_grid(depth_img, ida.flatten(0, 1), 8, (h // 16, w // 16)).view(b, n, h // 16, w // 16)
    hh, ww = cfg.grid.shape
    m = 3
    inst_boxes = torch.tensor([10.0, 20.0, 120.0, 100.0]).expand(b, n, m, 4).clone()
    inst_boxes[..., 1, :] = torch.tensor([150.0, 30.0, 260.0, 110.0])
    batch = StudentBatch(
        images=torch.randn(b, n, 3, h, w, generator=g), intrinsics=intr, cam2lidar=c2l, ida=ida,
        bda=torch.eye(4).repeat(b, 1, 1),
        gt_boxes=[torch.tensor([[4.0, 1.0, 0.0, 4.0, 1.8, 1.5, 0.3, 2.0, 0.0], [-3.0, -5.0, 0.2, 0.6, 0.6, 1.7, 0.0, 0, 0]])] * b,
        gt_labels=[torch.tensor([0, 8])] * b,
        depth_targets=depth,
        teacher=TeacherTargets(
            bev_features=torch.randn(b, cfg.teacher_bev_channels, hh, ww, generator=g),
            heatmaps=torch.rand(b, 10, hh, ww, generator=g) ** 4,
            regression=torch.randn(b, 10, hh, ww, generator=g),
            inst_boxes=inst_boxes, inst_labels=torch.tensor([0, 8, -1]).expand(b, n, m).clone(),
            inst_scores=torch.tensor([0.9, 0.8, 0.0]).expand(b, n, m).clone(),
            inst_masks=torch.rand(b, n, m, 28, 28, generator=g)))
    return with_targets(batch, cfg)


def with_targets(batch: StudentBatch, cfg) -> StudentBatch:
    """The batch with the targets a dataset worker builds (CenterPoint from its GT, X-IS pseudo labels
    from its image-teacher detections), built by the same functions for the whole batch at once."""
    from detection.det_targets import build_det_targets

    det = cfg.losses.det
    if batch.gt_boxes:
        batch.det_targets = build_det_targets(batch.gt_boxes, batch.gt_labels, cfg.grid, cfg.class_setup,
                                              det.gaussian_overlap, det.min_radius)
    t = batch.teacher
    if t is not None and t.inst_boxes is not None:
        batch.xis_targets = xis_targets(t.inst_boxes.flatten(0, 1), t.inst_labels.flatten(0, 1),
                                        t.inst_scores.flatten(0, 1), t.inst_masks.flatten(0, 1),
                                        batch.ida.flatten(0, 1), tuple(cfg.image_size), cfg.losses.xis.score_threshold)
    return batch


ALL_TERMS = {"loss_det", "loss_ds", "loss_xfd", "loss_xat", "loss_xod", "loss_xis"}


def test_tiny_student_forward_backward_with_every_loss():
    torch.manual_seed(0)
    cfg = small_student_config()
    model, crit = build_student(cfg), X3KDLoss(cfg)
    batch = _synthetic_batch(cfg)
    out = model(batch)
    assert out.pv_features.shape == (6, 32, 4, 11) and out.depth_logits.shape == (6, 8, 4, 11)
    assert out.bev_view.shape == (1, 16, 32, 32) and out.bev_features.shape == (1, 32, 32, 32)
    assert out.bev_view.abs().sum(1).gt(0).float().mean() > 0.05  # cameras see part of the grid
    losses = crit(out, batch)
    assert ALL_TERMS <= set(losses)
    assert all(torch.isfinite(v) and v > 0 for k, v in losses.items() if k.startswith("loss_"))
    total_loss(losses).backward()
    for name, mod in [("backbone", model.image_backbone), ("depth", model.depth_net), ("encoder", model.bev_encoder),
                      ("head", model.head), ("adapter", crit.adapter), ("disc", crit.discriminator),
                      ("xis", crit.xis_heads)]:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters()), name


@pytest.mark.parametrize("terms, reaches", [({}, True), ({"det": {"weight": 0.0}, "xod": {"enabled": False}}, False)])
def test_the_criterion_knows_whether_every_parameter_gets_a_gradient(terms, reaches):
    # what data-parallel training relies on to skip its search for unused parameters
    torch.manual_seed(0)
    cfg = small_student_config(**terms)
    model, crit = build_student(cfg), X3KDLoss(cfg)
    batch = _synthetic_batch(cfg)
    if not reaches:
        batch.gt_boxes, batch.gt_labels = [], []
    total_loss(crit(model(batch), batch)).backward()
    trainable = [p for m in (model, crit) for p in m.parameters() if p.requires_grad]
    assert crit.reaches_every_parameter == reaches
    assert all(p.grad is not None for p in trainable) == reaches


def test_kd_only_mode_trains_without_gt_boxes():
    torch.manual_seed(0)
    cfg = small_student_config(det={"weight": 0.0}, ds={"enabled": False}, xis={"enabled": False})
    model, crit = build_student(cfg), X3KDLoss(cfg)
    batch = _synthetic_batch(cfg)
    batch.gt_boxes, batch.gt_labels = [], []
    losses = crit(model(batch), batch)
    assert {k for k in losses if k.startswith("loss_")} == {"loss_xfd", "loss_xat", "loss_xod"}
    total_loss(losses).backward()
    assert model.head.task_heads[0].heatmap[-1].weight.grad.abs().sum() > 0


def test_missing_teacher_maps_with_enabled_kd_is_a_user_error():
    from cache_schema.errors import UserInputError

    cfg = small_student_config(xis={"enabled": False})
    model, crit = build_student(cfg), X3KDLoss(cfg)
    batch = _synthetic_batch(cfg)
    batch.teacher = None
    with pytest.raises(UserInputError, match="xfd"):
        crit(model(batch), batch)
    batch = _synthetic_batch(cfg)
    batch.gt_boxes = []
    with pytest.raises(UserInputError, match="loss.det"):
        crit(model(batch), batch)


def test_xis_heads_are_training_only_inference_model_size_is_unchanged():
    with_xis, without = small_student_config(), small_student_config(xis={"enabled": False})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    torch.manual_seed(0)
    assert count(build_student(with_xis)) == count(build_student(without))
    extra = count(X3KDLoss(with_xis)) - count(X3KDLoss(without))
    assert extra > 0
    assert count(X3KDLoss(with_xis).xis_heads) == extra


def test_predict_undoes_the_bev_augmentation():
    from detection.bev_aug import augment_boxes, bev_aug_matrix
    from detection.centerpoint_coder import decode_detections

    torch.manual_seed(0)
    cfg = small_student_config()
    model = build_student(cfg).eval()
    batch = _synthetic_batch(cfg, b=2)
    batch.bda[1] = bev_aug_matrix(rotate=90.0, flip_x=True)
    dets = model.predict(batch)
    with torch.no_grad():
        raw = decode_detections(model(batch).head_outputs, model.box_coder)
    assert len(dets) == 2 and len(dets[1]) == len(raw[1]) > 0
    assert torch.allclose(dets[0].boxes, raw[0].boxes)  # identity augmentation
    # Augmenting the returned boxes again gives what the head saw in the augmented frame.
    assert torch.allclose(augment_boxes(dets[1].boxes, batch.bda[1])[:, :6], raw[1].boxes[:, :6], atol=1e-4)
    assert torch.allclose(augment_boxes(dets[1].boxes, batch.bda[1])[:, 7:], raw[1].boxes[:, 7:], atol=1e-4)


def test_importing_student_never_loads_other_stages_or_mm_libraries():
    code = ("import sys, importlib, pkgutil, student\n"
            "for m in pkgutil.walk_packages(student.__path__, 'student.'):\n"
            "    importlib.import_module(m.name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in "
            "{'teacher_export', 'pipelines', 'mmdet3d', 'mmdet', 'mmcv', 'mmengine', 'detectron2'})\n"
            "print(len(list(pkgutil.walk_packages(student.__path__, 'student.'))), bad)\n"
            "sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(r.stdout.split()[0]) >= 15  # every module of the package was imported
