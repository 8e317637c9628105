"""The X-FD, X-AT and X-OD variants of issue 29, each a config switch beside X3KD's formulation, held to
what each is for on small hand-made maps."""
from __future__ import annotations

import math

import pytest
import torch

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES, NUSCENES_TASKS, BevGrid, ClassSetup
from student.config import XATLossConfig, XFDLossConfig, XODLossConfig
from student.losses.xat import BevDiscriminator, ramp_factor, xat_loss
from student.losses.xfd import box_cell_weights, box_points, teacher_attention, xfd_loss
from student.losses.xod import xod_loss
from tests.student.configs import small_student_config

GRID = BevGrid((-6.4, -6.4, -5.0, 6.4, 6.4, 3.0), (0.2, 0.2, 8.0), 4)  # 16 x 16 cells of 0.8 m
CLASSES = ClassSetup(NUSCENES_CLASSES, NUSCENES_TASKS)


def test_gt_box_weights_cover_the_box_and_weigh_each_box_by_its_size():
    car = torch.tensor([[0.4, 0.4, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]])   # 4 m x 2 m: 5 x 3 cell centres
    cone = torch.tensor([[-4.4, -4.4, 0.0, 0.8, 0.8, 1.0, 0.0, 0.0, 0.0]])  # one cell
    w = box_cell_weights([torch.cat([car, cone])], GRID)[0, 0]
    assert (w > 0).sum() == 15 + 1
    assert w.max() == pytest.approx(1.0) and w[w > 0].min() == pytest.approx(math.sqrt(0.64 / 8.0))
    rotated = box_cell_weights([torch.tensor([[0.4, 0.4, 0.0, 4.0, 2.0, 1.5, math.pi / 2, 0.0, 0.0]])], GRID)[0, 0]
    car_only = box_cell_weights([car], GRID)[0, 0]
    assert torch.equal(rotated > 0, (car_only > 0).T)  # a quarter turn about its centre cell turns the footprint


def test_xfd_with_the_gt_box_split_gives_background_cells_no_weight():
    torch.manual_seed(0)
    teacher, student = torch.rand(1, 8, 16, 16), torch.rand(1, 8, 16, 16, requires_grad=True)
    boxes = [torch.tensor([[0.4, 0.4, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]])]
    fg = box_cell_weights(boxes, GRID)
    cfg = XFDLossConfig(region="gt_boxes", background_weight=0.0)
    base = xfd_loss(student, teacher, None, cfg, foreground=fg)["loss_xfd"]
    elsewhere = teacher.clone()
    elsewhere[..., fg[0, 0] == 0] += 5.0  # the teacher changes only on background cells
    assert torch.equal(xfd_loss(student, elsewhere, None, cfg, foreground=fg)["loss_xfd"], base)
    inside = teacher.clone()
    inside[..., fg[0, 0] > 0] += 5.0
    assert xfd_loss(student, inside, None, cfg, foreground=fg)["loss_xfd"] > base + 1
    # with a background weight the background counts again, normalised on its own
    with_bg = xfd_loss(student, elsewhere, None, XFDLossConfig(region="gt_boxes", background_weight=0.1),
                       foreground=fg)
    assert with_bg["loss_xfd"] > base and with_bg["xfd/background"] > 20
    # X3KD's heatmap weighting gives every cell weight >= 1, background included
    assert xfd_loss(student, elsewhere, torch.zeros(1, 10, 16, 16), XFDLossConfig())["loss_xfd"] > base + 1


def test_xfd_gt_gaussian_weights_are_the_gaussians():
    teacher, student = torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 16, 16)
    student[..., 3, 3] = 2.0  # error 4 per channel at one cell
    gauss = torch.zeros(1, 1, 16, 16)
    gauss[..., 3, 3], gauss[..., 8, 8] = 1.0, 1.0
    loss = xfd_loss(student, teacher, None, XFDLossConfig(region="gt_gaussian"), foreground=gauss)["loss_xfd"]
    assert loss.item() == pytest.approx(4.0 / 2)  # (1 * 4 + 1 * 0) / (1 + 1)


def test_xfd_attention_weighs_where_the_teacher_is_strong_and_changes_nothing_for_an_even_teacher():
    torch.manual_seed(0)
    student = torch.rand(1, 4, 16, 16)
    gauss = torch.rand(1, 1, 16, 16)
    even = torch.full((1, 4, 16, 16), 0.5)
    plain = xfd_loss(student, even, None, XFDLossConfig(region="gt_gaussian"), foreground=gauss)["loss_xfd"]
    attended = xfd_loss(student, even, None, XFDLossConfig(region="gt_gaussian", attention=True),
                        foreground=gauss)["loss_xfd"]
    assert attended.item() == pytest.approx(plain.item(), rel=1e-5)
    spatial, channel = teacher_attention(torch.rand(2, 4, 16, 16), 0.5)
    assert spatial.mean().item() == pytest.approx(1.0) and channel.mean().item() == pytest.approx(1.0)
    # one strong teacher cell: the same error there weighs more with attention than without
    teacher = torch.zeros(1, 4, 16, 16)
    teacher[..., 5, 5] = 3.0
    off = teacher.clone()
    off[..., 5, 5] += 1.0  # the student misses by 1 at the strong cell
    elsewhere = teacher.clone()
    elsewhere[..., 9, 9] += 1.0  # or by 1 at a weak cell
    flat = torch.ones(1, 1, 16, 16)
    cfg = XFDLossConfig(region="gt_gaussian", attention=True)
    strong = xfd_loss(off, teacher, None, cfg, foreground=flat)["loss_xfd"]
    weak = xfd_loss(elsewhere, teacher, None, cfg, foreground=flat)["loss_xfd"]
    assert strong > 10 * weak


def test_box_points_are_the_centre_corners_and_edge_midpoints_turned_with_the_box():
    box = torch.tensor([[1.0, 2.0, 0.0, 4.0, 2.0, 1.5, math.pi / 2, 0.0, 0.0]])
    points = box_points(box)[0]
    assert points[0].tolist() == pytest.approx([1.0, 2.0])
    # a quarter turn: the 4 m length lies along y, the 2 m width along x
    assert points[:, 0].min().item() == pytest.approx(0.0, abs=1e-6) and points[:, 0].max().item() == pytest.approx(2.0)
    assert points[:, 1].min().item() == pytest.approx(0.0, abs=1e-6) and points[:, 1].max().item() == pytest.approx(4.0)


def test_xfd_box_points_read_only_the_boxes_and_the_relation_ignores_scale():
    torch.manual_seed(0)
    teacher, student = torch.rand(1, 8, 16, 16), torch.rand(1, 8, 16, 16, requires_grad=True)
    boxes = [torch.tensor([[0.4, 0.4, 0.0, 4.0, 2.0, 1.5, 0.3, 0.0, 0.0]])]
    cfg = XFDLossConfig(region="box_points", relation_weight=1.0)
    base = xfd_loss(student, teacher, None, cfg, gt_boxes=boxes, grid=GRID)
    base["loss_xfd"].backward()
    grad = student.grad[0].abs().sum(0)
    assert grad[8, 8] > 0 and grad[0, 0] == 0 and grad[15, 15] == 0  # cells far from the box get nothing
    far = teacher.clone()
    far[..., :3, :3] += 5.0
    assert torch.equal(xfd_loss(student, far, None, cfg, gt_boxes=boxes, grid=GRID)["loss_xfd"], base["loss_xfd"])
    # a student equal to the teacher up to a positive scale has the teacher's relations exactly
    scaled = xfd_loss(3 * teacher, teacher, None, cfg, gt_boxes=boxes, grid=GRID)
    assert scaled["xfd/relation"].item() == pytest.approx(0.0, abs=1e-5) and scaled["xfd/points"] > 0
    exact = xfd_loss(teacher, teacher, None, cfg, gt_boxes=boxes, grid=GRID)
    assert exact["loss_xfd"].item() == pytest.approx(0.0, abs=1e-6)
    # no box in the batch: nothing to teach, and the graph still holds
    empty = xfd_loss(student, teacher, None, cfg, gt_boxes=[torch.zeros(0, 9)], grid=GRID)
    assert empty["loss_xfd"].item() == 0.0 and empty["loss_xfd"].requires_grad


def _confident_discriminator() -> BevDiscriminator:
    """A discriminator that is sure of everything: teacher cells (channel 0 > 0.5) real, others fake."""
    d = BevDiscriminator(2, 4)
    with torch.no_grad():
        for m in d.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
        d.net[0].weight[0, 0, 1, 1] = 1.0
        d.net[2].weight[0, 0, 1, 1] = 1.0
        d.net[4].weight[0, 0] = 100.0
        d.net[4].bias.fill_(-50.0)
    return d


@pytest.mark.parametrize("objective", ["nonsaturating", "least_squares"])
def test_xat_student_gradient_stays_when_the_discriminator_is_perfect(objective):
    teacher = torch.zeros(1, 2, 8, 8)
    teacher[:, 0] = 1.0  # "real": channel 0 on
    student = torch.zeros(1, 2, 8, 8, requires_grad=True)  # "fake": channel 0 off, D is sure of it
    d = _confident_discriminator()
    grl = xat_loss(d, student, teacher, XATLossConfig(objective="grl"))["loss_xat"]
    (g_grl,) = torch.autograd.grad(grl, student)
    assert g_grl.abs().max() < 1e-12  # the saturated sigmoid passes nothing back: X3KD's X-AT goes silent
    out = xat_loss(d, student, teacher, XATLossConfig(objective=objective))
    (g,) = torch.autograd.grad(out["loss_xat"], student, retain_graph=True)
    assert g.abs().max() > 1e-3 and g[:, 0].mean() < 0  # the student is pushed towards channel 0 on: real
    # the student's side does not move the discriminator: D's gradient is that of its own terms alone
    d_grad = torch.autograd.grad(out["loss_xat"], list(d.parameters()))
    alone = xat_loss(d, student.detach(), teacher, XATLossConfig(objective=objective))["loss_xat"]
    for a, b in zip(d_grad, torch.autograd.grad(alone, list(d.parameters()))):
        assert torch.allclose(a, b)


def test_xat_ramp_and_foreground_region():
    assert ramp_factor(0.0) == 0.0 and ramp_factor(1.0) == pytest.approx(1.0, abs=1e-4)
    assert 0.45 < ramp_factor(0.1) < 0.5
    teacher, student = torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8, requires_grad=True)
    d = BevDiscriminator(4, 4)
    ramped = xat_loss(d, student, teacher, XATLossConfig(objective="nonsaturating", ramp=True), progress=0.0)
    (g,) = torch.autograd.grad(ramped["loss_xat"], student)
    assert g.abs().max() == 0  # at the start of the run the student's side is off
    heat = torch.zeros(1, 10, 8, 8)
    heat[0, 3, 2, 2] = 0.9
    fg = xat_loss(d, student, teacher, XATLossConfig(region="foreground"), teacher_heatmaps=heat)
    (g,) = torch.autograd.grad(fg["loss_xat"], student)
    # only the cell the teacher sees an object at (and what the discriminator's 3x3 field reaches of it)
    assert g[..., 2, 2].abs().sum() > 0 and g[..., 6:, 6:].abs().sum() == 0


def _head(logits: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Head outputs with the given class logits [1, 10, H, W] (class order) and zero regression."""
    out, k = [], 0
    h, w = logits.shape[-2:]
    for task in NUSCENES_TASKS:
        out.append({"heatmap": logits[:, k:k + len(task)], "reg": torch.zeros(1, 2, h, w),
                    "height": torch.zeros(1, 1, h, w), "dim": torch.zeros(1, 3, h, w), "rot": torch.zeros(1, 2, h, w),
                    "vel": torch.zeros(1, 2, h, w)})
        k += len(task)
    return out


def test_class_agnostic_xod_is_the_same_under_a_permutation_of_the_teachers_classes():
    torch.manual_seed(0)
    logits = torch.randn(1, 10, 8, 8)
    heat = torch.rand(1, 10, 8, 8) ** 3
    reg = torch.randn(1, 10, 8, 8)
    task = torch.zeros(1, 8, 8, dtype=torch.long)
    perm = torch.randperm(10)
    agnostic = XODLossConfig(classes="class_agnostic")
    a = xod_loss(_head(logits), heat, reg, CLASSES, agnostic, reg_task=task)
    b = xod_loss(_head(logits), heat[:, perm], reg, CLASSES, agnostic, reg_task=task)
    assert torch.equal(a["xod/heatmap"], b["xod/heatmap"]) and torch.equal(a["loss_xod"], b["loss_xod"])
    per_class = XODLossConfig()
    assert not torch.equal(xod_loss(_head(logits), heat, reg, CLASSES, per_class, reg_task=task)["xod/heatmap"],
                           xod_loss(_head(logits), heat[:, perm], reg, CLASSES, per_class, reg_task=task)["xod/heatmap"])


def test_gt_gated_xod_ignores_cells_outside_the_gt_gaussians():
    torch.manual_seed(0)
    logits, heat, reg = torch.randn(1, 10, 8, 8), torch.rand(1, 10, 8, 8), torch.randn(1, 10, 8, 8)
    region = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    region[..., :4, :4] = True
    cfg = XODLossConfig(region="gt")
    a = xod_loss(_head(logits), heat, reg, CLASSES, cfg, gt_region=region)["loss_xod"]
    changed = heat.clone()
    changed[..., 4:, 4:] = torch.rand(1, 10, 4, 4)
    assert torch.equal(xod_loss(_head(logits), changed, reg, CLASSES, cfg, gt_region=region)["loss_xod"], a)


def test_gt_gated_variants_need_the_det_loss_and_bad_names_are_one_line():
    small_student_config(xfd={"region": "gt_boxes"})  # with det on: fine
    with pytest.raises(UserInputError, match="loss.xfd.region gt_boxes.*KD-only"):
        small_student_config(xfd={"region": "gt_boxes"}, det={"weight": 0.0})
    with pytest.raises(UserInputError, match="loss.xfd.region box_points.*KD-only"):
        small_student_config(xfd={"region": "box_points"}, det={"weight": 0.0})
    with pytest.raises(UserInputError, match="loss.xfd.attention"):
        small_student_config(xfd={"region": "box_points", "attention": True})
    with pytest.raises(UserInputError, match="loss.xod.region"):
        small_student_config(xod={"region": "everywhere"})
    with pytest.raises(UserInputError, match="loss.xat.objective"):
        small_student_config(xat={"objective": "wgan"})


def test_the_discriminator_gets_its_own_learning_rate(train_cache, synthetic_dataroot, tmp_path):
    from student.train import _build_training
    from student.train_config import load_train_config
    from student.data.dataset import open_cache
    from tests.student.run_paths import TINY_YAML

    cfg = load_train_config(TINY_YAML, ["loss.xat.discriminator_lr_scale=0.1", "loss.xat.objective=nonsaturating"])
    reader = open_cache(train_cache, cfg.student)
    run = _build_training(cfg, reader, train_cache, torch.device("cpu"), 10)
    groups = run.optimizer.param_groups
    disc = {id(p) for p in run.criterion.discriminator.parameters()}
    assert len(groups) == 2 and {id(p) for p in groups[1]["params"]} == disc
    assert groups[1]["lr"] == pytest.approx(0.1 * groups[0]["lr"])


@pytest.mark.parametrize("overrides", [
    ["loss.xfd.region=gt_gaussian", "loss.xfd.attention=true"],
    ["loss.xfd.region=box_points", "loss.xfd.relation_weight=1"],
])
def test_the_criterion_runs_the_xfd_variants_on_a_real_batch(overrides, train_cache, synthetic_dataroot):
    """From the cache through the loader and the criterion: a finite X-FD that moves the student."""
    from student.data.dataset import CacheDataset, collate, open_cache
    from student.losses import X3KDLoss
    from student.models.student import build_student
    from student.train_config import load_train_config
    from tests.student.run_paths import TINY_YAML

    cfg = load_train_config(TINY_YAML, ["loss.xis.enabled=false", *overrides])
    s = cfg.student
    batch = collate([CacheDataset(open_cache(train_cache, s), synthetic_dataroot, s, cfg.data, seed=1)[(0, i)]
                     for i in range(2)])
    assert sum(len(b) for b in batch.gt_boxes) > 0
    torch.manual_seed(0)
    model, criterion = build_student(s), X3KDLoss(s)
    loss = criterion(model(batch), batch)["loss_xfd"]
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
