"""Every X3KD loss term against an independent computation on small hand-made tensors."""
import math

import pytest
import torch

from cache_schema.grid import ClassSetup
from student.config import DepthLossConfig, DetLossConfig, XATLossConfig, XFDLossConfig, XODLossConfig
from detection.det_loss import det_loss
from student.losses.ds import ds_loss
from student.losses.xat import BevDiscriminator, grad_reverse, xat_loss
from student.losses.xfd import xfd_loss
from student.losses.xod import xod_loss
from detection.det_targets import TaskTargets

CLASSES = ClassSetup(("a", "b", "c"), (("a",), ("b", "c")))  # two task groups, three classes
H, W = 3, 4


def _sig(x):
    return 1 / (1 + math.exp(-x))


def _head_outputs(g, b=2):
    return [{"reg": torch.randn(b, 2, H, W, generator=g), "height": torch.randn(b, 1, H, W, generator=g),
             "dim": torch.randn(b, 3, H, W, generator=g), "rot": torch.randn(b, 2, H, W, generator=g),
             "vel": torch.randn(b, 2, H, W, generator=g), "heatmap": torch.randn(b, len(t), H, W, generator=g) * 2}
            for t in CLASSES.tasks]


def _reg_vec(outs, t, b, i, j):
    o = outs[t]
    return [float(o[k][b, c, i, j]) for k in ("reg", "height", "dim", "rot", "vel") for c in range(o[k].shape[1])]


def test_det_loss_matches_explicit_focal_and_l1_loops():
    g = torch.Generator().manual_seed(0)
    outs = _head_outputs(g)
    targets = []
    for t, task in enumerate(CLASSES.tasks):
        hm = torch.rand(2, len(task), H, W, generator=g) * 0.9
        hm[0, 0, 1, 2] = 1.0
        hm[1, -1, 2, 3] = 1.0
        targets.append(TaskTargets(hm, torch.tensor([0, 1]), torch.tensor([1 * W + 2, 2 * W + 3]),
                                   torch.randn(2, 10, generator=g)))
    cfg = DetLossConfig(weight=0.7)
    got = det_loss(outs, targets, cfg)["loss_det"]

    cw = cfg.code_weights
    ref = 0.0
    for t, tgt in enumerate(targets):
        hm_sum, npos = 0.0, 0
        for idx in range(tgt.heatmap.numel()):
            y = float(tgt.heatmap.flatten()[idx])
            p = min(max(_sig(float(outs[t]["heatmap"].flatten()[idx])), 1e-4), 1 - 1e-4)
            if y == 1.0:
                npos += 1
                hm_sum += -math.log(p) * (1 - p) ** 2
            else:
                hm_sum += -math.log(1 - p) * p ** 2 * (1 - y) ** 4
        l1 = 0.0
        for m in range(2):
            b, cell = int(tgt.batch_index[m]), int(tgt.cell_index[m])
            pred = _reg_vec(outs, t, b, cell // W, cell % W)
            l1 += sum(cw[c] * abs(pred[c] - float(tgt.box_target[m, c])) for c in range(10))
        ref += hm_sum / max(npos, 1) + 0.25 * l1 / (2 + 1e-4)
    assert got.item() == pytest.approx(0.7 * ref, rel=1e-5)


def test_ds_loss_matches_softmax_bce_loop_on_pixels_with_targets():
    g = torch.Generator().manual_seed(1)
    d_bound = (2.0, 10.0, 2.0)  # bins [2,4) [4,6) [6,8) [8,10)
    logits = torch.randn(2, 4, 2, 3, generator=g)
    depth = torch.tensor([[[0.0, 3.0, 9.9], [5.0, 0.0, 12.0]], [[7.5, 0.0, 0.0], [2.0, 4.2, 1.0]]])[None]
    got = ds_loss(logits, depth, d_bound, DepthLossConfig(weight=3.0))["loss_ds"]
    total, n = 0.0, 0
    for m in range(2):
        for i in range(2):
            for j in range(3):
                d = float(depth[0, m, i, j])
                k = math.floor((d - 2.0) / 2.0)
                if d <= 0 or not 0 <= k < 4:
                    continue
                n += 1
                z = [math.exp(float(logits[m, c, i, j])) for c in range(4)]
                for c in range(4):
                    p = z[c] / sum(z)
                    total += -math.log(p) if c == k else -math.log(1 - p)
    assert n == 6
    assert got.item() == pytest.approx(3.0 * total / n, rel=1e-5)


def test_xfd_loss_matches_weighted_mse_loop_and_is_zero_when_equal():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 5, H, W, generator=g), torch.randn(2, 5, H, W, generator=g)
    heat = torch.rand(2, 3, H, W, generator=g)
    got = xfd_loss(s, t, heat, XFDLossConfig(weight=2.0, fg_weight=4.0))["loss_xfd"]
    num = den = 0.0
    for b in range(2):
        for i in range(H):
            for j in range(W):
                w = 1 + 4.0 * max(float(heat[b, k, i, j]) for k in range(3))
                num += w * sum((float(s[b, c, i, j]) - float(t[b, c, i, j])) ** 2 for c in range(5))
                den += w
    assert got.item() == pytest.approx(2.0 * num / (5 * den), rel=1e-5)
    assert xfd_loss(t.clone(), t, heat, XFDLossConfig())["loss_xfd"].item() == 0.0


def test_xat_loss_value_and_gradient_reversal():
    torch.manual_seed(3)
    disc = BevDiscriminator(4, 6)
    s = torch.randn(1, 4, H, W, requires_grad=True)
    t = torch.randn(1, 4, H, W)
    cfg = XATLossConfig(weight=1.0, grl_scale=0.5)
    loss = xat_loss(disc, s, t, cfg)["loss_xat"]
    real, fake = disc(t).detach(), disc(s).detach()
    ref = sum(-math.log(_sig(float(x))) for x in real.flatten()) / real.numel() + \
        sum(-math.log(1 - _sig(float(x))) for x in fake.flatten()) / fake.numel()
    assert loss.item() == pytest.approx(ref, rel=1e-5)

    loss.backward()
    grad_student = s.grad.clone()
    grad_disc = [p.grad.clone() for p in disc.parameters()]
    # Same loss without the reversal: the student's gradient flips sign and is scaled by lambda,
    # the discriminator's gradient is unchanged (it still learns to separate real from fake).
    s.grad = None
    disc.zero_grad()
    plain = (torch.nn.functional.binary_cross_entropy_with_logits(disc(t), torch.ones_like(real))
             + torch.nn.functional.binary_cross_entropy_with_logits(disc(s), torch.zeros_like(fake)))
    plain.backward()
    assert grad_student.abs().sum() > 0
    assert torch.allclose(grad_student, -0.5 * s.grad, atol=1e-6)
    for a, p in zip(grad_disc, disc.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_grad_reverse_is_identity_forward():
    x = torch.randn(3, requires_grad=True)
    y = grad_reverse(x, 2.0)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -2.0))


@pytest.mark.parametrize("reg_mask,normalize", [("threshold", "peaks"), ("soft", "mass")])
def test_xod_loss_matches_loop_and_picks_the_teacher_task_group(reg_mask, normalize):
    g = torch.Generator().manual_seed(4)
    outs = _head_outputs(g)
    h_t = torch.rand(2, 3, H, W, generator=g) * 0.8
    t_reg = torch.randn(2, 10, H, W, generator=g)
    cfg = XODLossConfig(weight=1.5, gamma=2.0, reg_weight=0.25, reg_mask=reg_mask, reg_threshold=0.5,
                        normalize=normalize)
    got = xod_loss(outs, h_t, t_reg, CLASSES, cfg)["loss_xod"]
    # Class index -> (task group, channel in group) for CLASSES: a -> (0, 0), b -> (1, 0), c -> (1, 1).
    where = [(0, 0), (1, 0), (1, 1)]
    hm = reg_num = reg_den = 0.0
    for b in range(2):
        for i in range(H):
            for j in range(W):
                for k, (t, ch) in enumerate(where):
                    p, y = _sig(float(outs[t]["heatmap"][b, ch, i, j])), float(h_t[b, k, i, j])
                    hm += abs(p - y) ** 2 * -(y * math.log(p) + (1 - y) * math.log(1 - p))
                probs = [float(h_t[b, k, i, j]) for k in range(3)]
                best = max(range(3), key=lambda k: probs[k])
                w = max(probs) if reg_mask == "soft" or max(probs) >= 0.5 else 0.0
                pred = _reg_vec(outs, where[best][0], b, i, j)
                reg_num += w * sum(abs(pred[c] - float(t_reg[b, c, i, j])) for c in range(10))
                reg_den += w
    if normalize == "mass":
        norm = max(1.0, float(h_t.sum()))
    else:  # the teacher's objects: per-class cells >= 0.5 that no 3x3 neighbour exceeds
        norm = 0
        for b in range(2):
            for k in range(3):
                for i in range(H):
                    for j in range(W):
                        v = float(h_t[b, k, i, j])
                        around = h_t[b, k, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
                        norm += v >= 0.5 and v >= float(around.max())
        norm = max(1.0, float(norm))
    ref = hm / norm + 0.25 * reg_num / reg_den
    assert got.item() == pytest.approx(1.5 * ref, rel=1e-5)


def test_xod_loss_is_zero_when_student_equals_teacher():
    g = torch.Generator().manual_seed(5)
    h_t = torch.rand(1, 3, H, W, generator=g) * 0.9 + 0.05
    t_reg = torch.randn(1, 10, H, W, generator=g)
    logit = torch.log(h_t / (1 - h_t))
    split = dict(zip(("reg", "height", "dim", "rot", "vel"), t_reg.split([2, 1, 3, 2, 2], 1)))
    outs = [{**split, "heatmap": logit[:, :1]}, {**split, "heatmap": logit[:, 1:]}]
    got = xod_loss(outs, h_t, t_reg, CLASSES, XODLossConfig())["loss_xod"]
    assert got.item() == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------- warped teacher maps: validity ---

def _rotated_teacher(angle_deg: float = 22.5):
    from cache_schema.grid import BevGrid
    from detection.bev_aug import bev_aug_matrix, teacher_validity
    from detection.centerpoint_coder import augment_teacher_maps

    grid = BevGrid((-12.8, -12.8, -5.0, 12.8, 12.8, 3.0), (0.2, 0.2, 8.0), 4)  # 32 x 32
    torch.manual_seed(0)
    feats = torch.rand(1, 8, 32, 32) + 0.5  # no zeros of its own
    heat = torch.rand(1, 10, 32, 32) * 0.5
    reg = torch.rand(1, 10, 32, 32)
    bda = bev_aug_matrix(rotate=angle_deg).float()[None]  # degrees
    f, h, r = augment_teacher_maps(bda, grid, feats, heat, reg)
    return f, h, r, teacher_validity(bda, grid)


def test_rotation_marks_the_cells_that_left_the_grid_invalid():
    f, _, r, valid = _rotated_teacher(22.5)
    invalid = 1 - valid
    assert 0.08 < invalid.mean() < 0.18  # ~13% of a square grid at 22.5 degrees
    assert (r * invalid).abs().sum() == 0  # regression is zeroed exactly there
    assert (f[:, :, valid[0, 0] == 1].amin() > 0)  # features are teacher data wherever valid
    assert _rotated_teacher(0.0)[3].min() == 1


def test_kd_terms_ignore_the_zero_filled_border_of_a_warped_teacher():
    """A student that equals the teacher wherever the teacher has data loses nothing in X-FD and X-OD,
    whatever it predicts in the border; without the mask the border's zeros would count as targets."""
    f, h, r, valid = _rotated_teacher(22.5)
    border = valid[0, 0] == 0
    student = f.clone()
    student[:, :, border] = 3.0
    cfg = XFDLossConfig(weight=1.0, fg_weight=2.0)
    assert xfd_loss(student, f, h, cfg, valid)["loss_xfd"].item() == pytest.approx(0.0, abs=1e-7)
    assert xfd_loss(student, f, h, cfg)["loss_xfd"].item() > 0.1

    classes = ClassSetup()
    logits = torch.logit(h.clamp(1e-4, 1 - 1e-4))
    logits[:, :, border] = 5.0  # confident where the teacher has no answer
    heads = []
    for task in classes.tasks:
        ids = [classes.classes.index(c) for c in task]
        heads.append({"heatmap": logits[:, ids], "reg": r[:, 0:2], "height": r[:, 2:3], "dim": r[:, 3:6],
                      "rot": r[:, 6:8], "vel": r[:, 8:10]})
    xod_cfg = XODLossConfig(weight=1.0)
    masked = xod_loss(heads, h, r, classes, xod_cfg, valid)
    unmasked = xod_loss(heads, h, r, classes, xod_cfg)
    assert masked["xod/heatmap"] < 0.2 * unmasked["xod/heatmap"]


def test_xat_counts_only_valid_cells_on_both_sides():
    import torch.nn.functional as F

    _, _, _, valid = _rotated_teacher(22.5)
    d = BevDiscriminator(4, 8)
    torch.manual_seed(1)
    s, t = torch.randn(1, 4, 32, 32), torch.randn(1, 4, 32, 32)
    cfg = XATLossConfig(weight=1.0)
    inside = valid[0, 0] == 1
    with torch.no_grad():
        real, fake = d(t)[0, 0], d(s)[0, 0]
    expected = (F.binary_cross_entropy_with_logits(real[inside], torch.ones_like(real[inside]))
                + F.binary_cross_entropy_with_logits(fake[inside], torch.zeros_like(fake[inside])))
    masked = xat_loss(d, s, t, cfg, valid)
    assert masked["loss_xat"].item() == pytest.approx(expected.item(), rel=1e-5)
    # The mean over all cells, border included, is another number.
    whole = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
             + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    assert xat_loss(d, s, t, cfg)["loss_xat"].item() == pytest.approx(whole.item(), rel=1e-5)


def test_xod_regression_follows_the_task_the_regression_was_written_from():
    """After a BEV warp the bilinear heatmap's best class may belong to another task group than the
    nearest-sampled regression cell; with reg_task given, X-OD reads the student's matching group."""
    g = torch.Generator().manual_seed(6)
    outs = _head_outputs(g)
    h_t = torch.zeros(2, 3, H, W)
    h_t[:, 0] = 0.9  # class a (task 0) looks best everywhere...
    from detection.centerpoint_coder import join_regression

    t_reg = join_regression(outs[1]).detach()  # ...but the teacher wrote task 1's regression
    cfg = XODLossConfig(weight=1.0)
    task1 = torch.ones(2, H, W, dtype=torch.long)
    assert xod_loss(outs, h_t, t_reg, CLASSES, cfg, reg_task=task1)["xod/reg"].item() == pytest.approx(0.0, abs=1e-6)
    assert xod_loss(outs, h_t, t_reg, CLASSES, cfg)["xod/reg"].item() > 0.1


def test_the_task_map_moves_with_the_regression_cells():
    from cache_schema.grid import BevGrid
    from detection.bev_aug import bev_aug_matrix
    from detection.centerpoint_coder import teacher_task_map, warp_regression_maps, warp_task_map

    grid = BevGrid((-12.8, -12.8, -5.0, 12.8, 12.8, 3.0), (0.2, 0.2, 8.0), 4)
    classes = ClassSetup()
    g = torch.Generator().manual_seed(7)
    heat = torch.rand(1, 10, 32, 32, generator=g)
    task = teacher_task_map(heat, classes)
    # A regression map whose height channel spells out the task index of its cell.
    reg = torch.zeros(1, 10, 32, 32)
    reg[:, 2] = task.float()
    reg[:, 7] = 1.0  # cos yaw
    bda = bev_aug_matrix(rotate=30.0, scale=1.0).float()[None]
    moved_reg = warp_regression_maps(reg, bda, grid)
    moved_task = warp_task_map(task, bda, grid)
    from detection.bev_aug import teacher_validity

    valid = teacher_validity(bda, grid)[0, 0] == 1
    assert torch.equal(moved_reg[0, 2][valid].round().long(), moved_task[0][valid])


def test_one_level_roi_align_equals_torchvisions_multiscale_roi_align():
    """X-IS pools RoIs by a sparse gather or by two dense products per RoI; with either, values and
    gradients are torchvision's, also for boxes that reach outside the image and images without boxes.
    "auto" takes the dense products on small maps and the gather on large ones."""
    from torchvision.ops import MultiScaleRoIAlign

    from student.losses.xis import OneLevelRoIAlign

    g = torch.Generator().manual_seed(7)
    n, c, h, w = 3, 8, 5, 12
    image_shapes = [(h * 16, w * 16)] * n
    boxes = []
    for k in (6, 0, 9):
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w * 16.0 + 60, h * 16.0 + 60]) - 30
        boxes.append(torch.cat([xy, xy + torch.rand(k, 2, generator=g) * 150 + 0.5], 1))
    for size in (7, 14):
        feat = torch.randn(n, c, h, w, generator=g, requires_grad=True)
        ref = MultiScaleRoIAlign(["0"], size, 2)({"0": feat}, boxes, image_shapes)
        weights = torch.randn(ref.shape, generator=g)
        g_ref = torch.autograd.grad((ref * weights).sum(), feat)[0]
        for method in ("gather", "separable", "auto"):
            got = OneLevelRoIAlign(size, 2, method)({"0": feat}, boxes, image_shapes)
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
            g_got = torch.autograd.grad((got * weights).sum(), feat)[0]
            torch.testing.assert_close(g_got, g_ref, atol=1e-5, rtol=1e-5)
        assert OneLevelRoIAlign(size, 2)({"0": feat}, [torch.zeros(0, 4)] * n, image_shapes).shape == (0, c, size, size)
    # a feature table of more than 32k pixels (the gather's backward then sorts on int32 keys, not int16)
    big = torch.randn(1, 2, 180, 200, generator=g, requires_grad=True)
    rois = [torch.tensor([[10.0, 20.0, 2900.0, 2500.0], [1000.0, 5.0, 1300.0, 400.0]])]
    ref = MultiScaleRoIAlign(["0"], 7, 2)({"0": big}, rois, [(180 * 16, 200 * 16)])
    weights = torch.randn(ref.shape, generator=g)
    g_ref = torch.autograd.grad((ref * weights).sum(), big)[0]
    for method in ("gather", "separable"):
        got = OneLevelRoIAlign(7, 2, method)({"0": big}, rois, [(180 * 16, 200 * 16)])
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.autograd.grad((got * weights).sum(), big)[0], g_ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="dense"):
        OneLevelRoIAlign(7, 2, "dense")
    # auto: the dense products on the tiny config's 4 x 11 maps, the gather on R50's 16 x 44
    assert [OneLevelRoIAlign(s, 2).method_for((4, 11)) for s in (7, 14)] == ["separable", "separable"]
    assert [OneLevelRoIAlign(s, 2).method_for((16, 44)) for s in (7, 14)] == ["gather", "gather"]


def test_xis_rpn_proposals_are_torchvisions_with_the_images_filtered_in_parallel():
    """X-IS's RPN filters each camera image's proposals in a thread of its own; the proposals and
    scores are torchvision's RegionProposalNetwork's, element for element, with one thread or several."""
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.rpn import RegionProposalNetwork

    from tests.student.configs import small_student_config
    from student.losses.xis import XISHeads

    cfg = small_student_config().losses.xis
    torch.manual_seed(3)
    heads = XISHeads(32, 10, cfg).eval()
    reference = RegionProposalNetwork.__new__(RegionProposalNetwork)
    reference.__dict__.update(heads.rpn.__dict__)  # the same modules and settings, torchvision's methods
    feats = {"0": torch.randn(6, 32, 4, 11) * 3}
    images = ImageList(torch.zeros(6, 3, 64, 176), [(64, 176)] * 6)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                boxes, _ = heads.rpn(images, feats)
                ref_boxes, _ = reference(images, feats)
            assert len(boxes) == 6 and all(len(b) > 0 for b in boxes)
            for got, ref in zip(boxes, ref_boxes):
                assert torch.equal(got, ref)
    finally:
        torch.set_num_threads(threads)


def test_xis_losses_and_gradients_equal_torchvisions_mask_rcnn_parts():
    """X-IS's heads (threaded proposal filtering, gather RoIAlign, class-selected mask logits, one
    RoIAlign for all mask targets) give torchvision's five losses and gradients on the same inputs and
    the same sampling draws: the speed-ups change no value beyond float rounding. (Batched anchor and
    proposal matching included: torchvision's sampler must see the same labels to draw the same RoIs.)"""
    from collections import OrderedDict

    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import RegionProposalNetwork
    from torchvision.ops import MultiScaleRoIAlign

    from tests.student.configs import small_student_config
    from student.losses.xis import XISHeads

    cfg = small_student_config().losses.xis
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(5)
    heads = XISHeads(32, 10, cfg).train()
    rpn = RegionProposalNetwork.__new__(RegionProposalNetwork)
    rpn.__dict__.update(heads.rpn.__dict__)
    roi = RoIHeads.__new__(RoIHeads)
    roi.__dict__.update(heads.roi_heads.__dict__)
    roi.__dict__["_modules"] = OrderedDict(heads.roi_heads._modules, box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
                                           mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2))
    h, w = 64, 176
    targets = []
    for k in (5, 1, 0, 8, 3):  # pseudo-labels per image; an image without any (empty_images: background)
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w - 40.0, h - 30.0])
        boxes = torch.cat([xy, xy + 8 + torch.rand(k, 2, generator=g) * 30], 1)
        masks = (torch.rand(k, h, w, generator=g) > 0.5).to(torch.uint8)
        targets.append({"boxes": boxes, "labels": torch.randint(1, 11, (k,), generator=g), "masks": masks})
    n = len(targets)
    images = torch.zeros(n, 3, h, w)
    base = torch.randn(n, 32, 4, 11, generator=g) * 2

    def losses(rpn_module, roi_module):
        feat = base.clone().requires_grad_()
        image_list = ImageList(images, [(h, w)] * n)
        torch.manual_seed(11)  # the RPN's and the RoI heads' positive/negative sampling draws
        proposals, rpn_losses = rpn_module(image_list, {"0": feat}, targets)
        _, roi_losses = roi_module({"0": feat}, proposals, [(h, w)] * n, targets)
        parts = {**rpn_losses, **roi_losses}
        grad = torch.autograd.grad(sum(parts.values()), [feat] + list(heads.parameters()), allow_unused=True)
        return parts, grad

    got, got_grad = losses(heads.rpn, heads.roi_heads)
    ref, ref_grad = losses(rpn, roi)
    assert set(got) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert got["loss_mask"] > 0
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], atol=1e-5, rtol=1e-5)
    for a, b in zip(got_grad, ref_grad):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
