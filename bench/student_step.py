"""Student training-step cost: forward + backward time and peak memory per step.

Rows: the tiny test config and the R50 256x704 config (128x128 BEV, 112 depth bins).
Columns: no KD (det + DS) vs all KD terms (det + DS + X-FD + X-AT + X-OD + X-IS) with cached-style
teacher targets (random tensors of the cache's shapes: reading them is the data loader's cost, not
the step's) vs online teachers: the same all-KD step plus the built-in teachers run inside it, as a
trainer without a cache must (CenterPoint pillar02 on a 250k-point cloud per sample and Mask R-CNN
R50-FPN on the six camera images, under inference_mode; the loss terms use the same-shape targets as
the cached column, so the student side is identical and the difference is the teachers' cost).

Each case runs in its own subprocess so peak memory is per case: CUDA's max_memory_allocated on a
GPU, the growth of peak RSS over the model-and-batch baseline on CPU. Besides wall time (median and
min over the timed steps; the time ratio uses the min, the least disturbed by other load) the table
gives the FLOPs of one training step (torch's FlopCounterMode), which do not depend on the machine.

    python -m bench.student_step                   # both configs, CPU
    python -m bench.student_step --configs tiny --steps 5
    python -m bench.student_step --device cuda --batch-size 4
    python -m bench.student_step --breakdown --configs tiny --steps 10
    python -m bench.student_step --breakdown --configs r50 --steps 3 --terms xis --profile 30

--breakdown attributes the KD overhead instead: in one process, steps of no-KD, all-KD and all-KD with
one term switched off are interleaved round by round, so load on the machine hits every case alike.
The all-KD / no-KD ratio and a term's cost (the all-KD step minus the step without it) are medians of
the per-round pairs. Beside that, each term's loss alone is timed forward + backward on fixed model
outputs (min over 20: its own cost, free of the step's noise). With X-IS, also the all-KD step with
X-IS on torchvision's own RPN, RoIHeads and RoIAlign (what it ran before; the same losses).
With X-IS on CPU, also X-IS's two RoI pools timed by each of OneLevelRoIAlign's methods (sparse
gather, separable products) on one loss's inputs, and the method "auto" picks.
--profile ROWS adds torch.profiler's top ops of one all-KD step. The per-sample work of the data
loader that the KD terms need (teacher-map warps, targets, X-IS pseudo labels) is timed on its own:
it runs in the DataLoader workers, beside the step, not inside it.

All steps use the fused AdamW the trainer uses (student/train.py).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

MODES = {
    "no_kd": {"xfd": {"enabled": False}, "xat": {"enabled": False}, "xod": {"enabled": False},
              "xis": {"enabled": False}},
    "all_kd": {},
    "online_kd": {},
}


def make_online_teachers(device: str):
    from teacher_export.teachers.centerpoint.teacher import CenterPointTeacher
    from teacher_export.teachers.registry import build_image_teacher

    lidar = CenterPointTeacher(random_init=True, device=device)
    image = build_image_teacher("maskrcnn", random_init=True, class_names="nuimages", device=device)
    rng = torch.Generator().manual_seed(1)
    n = 250_000
    xyz = torch.rand(n, 3, generator=rng) * torch.tensor([102.4, 102.4, 6.0]) - torch.tensor([51.2, 51.2, 5.0])
    points = torch.cat([xyz, torch.rand(n, 1, generator=rng) * 255, torch.rand(n, 1, generator=rng) * 0.45], 1).numpy()

    def run(batch) -> None:
        frames = (batch.images.clamp(0, 1) * 255).to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
        lidar([points] * frames.shape[0])
        image([im for sample in frames for im in sample])

    return run


# "r50": the single-frame simplified student these tables were first measured on (FPN-style necks, no
# ASPP / deformable conv / depth aggregation; configs/r50_256x704.yaml); "bevdepth": the student as
# BEVDepth publishes it (the defaults: two key frames, depth aggregation;
# configs/bevdepth_r50_256x704_2key_cbgs_da_ema.yaml); "bevdepth_24e": its twin without depth
# aggregation (configs/bevdepth_r50_256x704_24e_2key.yaml); "bevdepth_1key": one key frame.
LIGHT_R50 = {"key_frames": 1, "backbone": {"neck": "fpn", "neck_channels": 256},
             "depth_net": {"mid_channels": 256, "residual_blocks": 2, "aspp": False, "deformable": False,
                           "aggregation": False},
             "bev_encoder": {"neck": "fpn"}}
CONFIGS = ("tiny", "r50", "bevdepth", "bevdepth_24e", "bevdepth_1key")


def make_config(name: str, mode: str | dict):
    """The student config `name` with the loss settings of `mode` (a MODES key, or a `losses` dict)."""
    from student.config import StudentConfig
    from tests.student.configs import small_student_config

    losses = MODES[mode] if isinstance(mode, str) else mode
    if name == "tiny":
        return small_student_config(**losses)
    if name == "r50":
        return StudentConfig.from_dict({**LIGHT_R50, "losses": losses})
    if name == "bevdepth":
        return StudentConfig.from_dict({"losses": losses})
    if name == "bevdepth_24e":
        return StudentConfig.from_dict({"depth_net": {"aggregation": False}, "losses": losses})
    if name == "bevdepth_1key":
        return StudentConfig.from_dict({"key_frames": 1, "losses": losses})
    raise SystemExit(f"unknown config {name!r}")


def flop_counter():
    """FlopCounterMode that also counts torchvision's deformable conv, which it does not know: as the
    convolution it computes (forward; its backward as 2x)."""
    import importlib

    from torch.utils.flop_counter import FlopCounterMode

    importlib.import_module("torchvision.ops")  # registers torch.ops.torchvision

    def conv_flops(out_shape, weight_shape) -> int:
        # the convolution the deformable conv computes, 2 FLOPs per multiply-accumulate; the bilinear
        # sampling of its inputs is not counted
        n, c_out, h, w = out_shape
        return 2 * n * c_out * h * w * weight_shape[1] * weight_shape[2] * weight_shape[3]

    def fwd(input_shape, weight_shape, *args, out_shape=None, **kwargs):
        return conv_flops(out_shape, weight_shape)

    def bwd(grad_shape, input_shape, weight_shape, *args, out_shape=None, **kwargs):
        return 2 * conv_flops(grad_shape, weight_shape)  # gradients of the input and of the weights

    ops = torch.ops.torchvision
    return FlopCounterMode(display=False, custom_mapping={ops.deform_conv2d.default: fwd,
                                                          ops._deform_conv2d_backward.default: bwd})


def make_batch(cfg, b: int, device: str):
    """A synthetic batch of the shapes the cache + data loader produce (cameras in a ring)."""
    import math

    from student.batch import StudentBatch, TeacherTargets

    n = cfg.num_cameras
    h, w = cfg.image_size
    g = torch.Generator().manual_seed(0)
    ida = torch.eye(3).expand(b, n, 3, 3).clone()
    k = torch.tensor([[0.6 * w, 0, w / 2], [0, 0.6 * w, h / 2], [0, 0, 1.0]]).expand(b, n, 3, 3).clone()
    c2l = torch.eye(4).repeat(b, n, 1, 1)
    for i in range(n):
        a = 2 * math.pi * i / n
        c2l[:, i, :3, :3] = torch.tensor([[math.sin(a), 0, math.cos(a)], [-math.cos(a), 0, math.sin(a)], [0, -1, 0]])
    hh, ww = cfg.grid.shape
    depth = torch.rand(b, n, h // 16, w // 16, generator=g) * 50
    depth[torch.rand(depth.shape, generator=g) > 0.3] = 0
    m = 20
    x1 = torch.rand(b, n, m, 1, generator=g) * (2 * w - 100)
    y1 = torch.rand(b, n, m, 1, generator=g) * (2 * h - 100)
    boxes = torch.cat([x1, y1, x1 + 40 + torch.rand(b, n, m, 1, generator=g) * 60,
                       y1 + 40 + torch.rand(b, n, m, 1, generator=g) * 60], -1) / 2
    gt = [torch.cat([torch.rand(30, 2, generator=g) * 80 - 40, torch.zeros(30, 1), torch.rand(30, 3, generator=g) * 3 + 1,
                     torch.rand(30, 3, generator=g)], 1) for _ in range(b)]
    prev = {}
    if cfg.key_frames == 2:  # the previous key frame: the same rig half a second (~5 m) back
        back = torch.eye(4)
        back[0, 3] = -5.0
        prev = dict(prev_images=torch.randn(b, n, 3, h, w, generator=g), prev_intrinsics=k.clone(),
                    prev_cam2lidar=back @ c2l)
    batch = StudentBatch(
        images=torch.randn(b, n, 3, h, w, generator=g), intrinsics=k, cam2lidar=c2l, ida=ida, **prev,
        bda=torch.eye(4).repeat(b, 1, 1), gt_boxes=gt, gt_labels=[torch.randint(0, 10, (30,), generator=g)] * b,
        depth_targets=depth,
        teacher=TeacherTargets(
            torch.randn(b, cfg.teacher_bev_channels, hh, ww, generator=g), torch.rand(b, 10, hh, ww, generator=g) ** 8,
            torch.randn(b, 10, hh, ww, generator=g), boxes, torch.randint(0, 10, (b, n, m), generator=g),
            torch.rand(b, n, m, generator=g), torch.rand(b, n, m, 28, 28, generator=g)))
    # The trainer's batches carry the targets the dataset workers build: CenterPoint and X-IS.
    from student.targets import xis_targets
    from detection.det_targets import build_det_targets

    det = cfg.losses.det
    batch.det_targets = build_det_targets(batch.gt_boxes, batch.gt_labels, cfg.grid, cfg.class_setup,
                                          det.gaussian_overlap, det.min_radius)

    t = batch.teacher
    batch.xis_targets = xis_targets(t.inst_boxes.flatten(0, 1), t.inst_labels.flatten(0, 1),
                                    t.inst_scores.flatten(0, 1), t.inst_masks.flatten(0, 1), ida.flatten(0, 1),
                                    (h, w), cfg.losses.xis.score_threshold)
    return batch.to(device)


def run_case(config: str, mode: str, steps: int, batch_size: int, device: str) -> dict:
    from student.losses import X3KDLoss, total_loss
    from student.models.student import build_student

    torch.manual_seed(0)
    cfg = make_config(config, mode)
    model, crit = build_student(cfg).to(device).train(), X3KDLoss(cfg).to(device).train()
    params = [p for p in list(model.parameters()) + list(crit.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    batch = make_batch(cfg, batch_size, device)
    online = make_online_teachers(device) if mode == "online_kd" else (lambda b: None)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # FLOPs of one training step: machine-independent, unlike wall time on a shared CPU.
    with flop_counter() as fc_train:
        online(batch)
        total_loss(crit(model(batch), batch)).backward()
    opt.zero_grad(set_to_none=True)
    times = []
    for i in range(steps + 1):  # step 0 warms up allocators and lazy init
        sync()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        online(batch)
        loss = total_loss(crit(model(batch), batch))
        loss.backward()
        opt.step()
        sync()
        if i:
            times.append(time.perf_counter() - t)
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    n_inf = sum(p.numel() for p in model.parameters())
    n_train = n_inf + sum(p.numel() for p in crit.parameters())
    # Inference cost: one eval forward of the model alone (training-only loss modules never run there).
    model.eval()
    with torch.no_grad(), flop_counter() as fc:
        model(batch)
    return {"config": config, "mode": mode, "step_s": statistics.median(times), "min_step_s": min(times),
            "train_gflops": fc_train.get_total_flops() / 1e9 / batch_size, "peak_mb": peak_mb,
            "params_inference_m": n_inf / 1e6, "params_training_m": n_train / 1e6,
            "inference_gflops": fc.get_total_flops() / 1e9 / batch_size}


TERMS = ("xfd", "xat", "xod", "xis")

# Inference parts of the camera student, in forward order, for the per-part cost table.
PARTS = ("image_backbone", "depth_net", "view_transform", "bev_encoder", "head")


def inference_cost(config: str) -> dict:
    """Parameters and the MACs of one inference forward (batch 1, six cameras), in total and per part.
    MACs = FlopCounterMode's FLOPs / 2: it counts matmuls and convolutions (2 FLOPs per multiply-
    accumulate) and nothing else (no BN, activations, softmax, pooling scatter), as mmcv/fvcore do."""
    from student.models.student import build_student

    torch.manual_seed(0)
    cfg = make_config(config, "no_kd")
    model = build_student(cfg).eval()
    batch = make_batch(cfg, 1, "cpu")
    with torch.no_grad(), flop_counter() as fc:
        model(batch)
    per_module = fc.get_flop_counts()
    parts = {p: sum(per_module.get(f"BEVDepthStudent.{p}", {}).values()) / 2e9 for p in PARTS}
    return {"config": config, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "gmacs": fc.get_total_flops() / 2e9, "gflops": fc.get_total_flops() / 1e9,
            "parts_gmacs": parts, "image_size": list(cfg.image_size), "grid": list(cfg.grid.shape)}


def run_breakdown(config: str, steps: int, batch_size: int, device: str, terms: tuple[str, ...] = TERMS,
                  profile_rows: int = 0) -> dict:
    from student.losses import X3KDLoss, total_loss
    from student.models.student import build_student

    def config_with(losses: dict):
        return make_config(config, losses)

    cases = {"no_kd": MODES["no_kd"], "all_kd": {}, **{f"without_{t}": {t: {"enabled": False}} for t in terms}}
    if "xis" in terms:
        cases["all_kd_torchvision_mask_rcnn"] = {}
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    built = {}
    for name, losses in cases.items():
        torch.manual_seed(0)
        cfg = config_with(losses)
        model, crit = build_student(cfg).to(device).train(), X3KDLoss(cfg).to(device).train()
        if name == "all_kd_torchvision_mask_rcnn":
            use_torchvision_mask_rcnn_parts(crit.xis_heads)
        params = [p for p in list(model.parameters()) + list(crit.parameters()) if p.requires_grad]
        built[name] = (model, crit, torch.optim.AdamW(params, lr=1e-4, fused=True), make_batch(cfg, batch_size, device))

    def step(model, crit, opt, batch) -> None:
        opt.zero_grad(set_to_none=True)
        total_loss(crit(model(batch), batch)).backward()
        opt.step()

    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(steps + 1):  # round 0 warms up
        for name, parts in built.items():
            sync()
            t = time.perf_counter()
            step(*parts)
            sync()
            if r:
                times[name].append(time.perf_counter() - t)
    profile = None
    if profile_rows:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
        with torch_profile(activities=activities, record_shapes=True) as prof:
            step(*built["all_kd"])
            sync()
        sort = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
        profile = prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=profile_rows)
    return {"config": config, "times": times, "terms_alone": criterion_costs(config_with, TERMS, device),
            "xis_stages": xis_stage_costs(config) if "xis" in terms and device == "cpu" else None,
            "roi_align": roi_align_costs(config) if "xis" in terms and device == "cpu" else None,
            "data": data_side_costs(config_with({}), batch_size), "profile": profile}


def use_torchvision_mask_rcnn_parts(heads) -> None:
    """X-IS as it ran before its heads were made cheaper: torchvision's own RPN and RoIHeads methods
    and its MultiScaleRoIAlign (same modules and weights, same losses; tests/student/test_loss_terms.py)."""
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import RegionProposalNetwork
    from torchvision.ops import MultiScaleRoIAlign

    heads.rpn.__class__ = RegionProposalNetwork
    heads.roi_heads.__class__ = RoIHeads
    heads.roi_heads.box_roi_pool = MultiScaleRoIAlign(["0"], 7, 2)
    heads.roi_heads.mask_roi_pool = MultiScaleRoIAlign(["0"], 14, 2)


XIS_STAGES = {  # label: (where, attribute); each timed on its own call, forward only
    "RPN conv": ("rpn", "head"),
    "anchors": ("rpn", "anchor_generator"),
    "proposals: decode": ("rpn.box_coder", "decode"),
    "proposals: top-k, NMS": ("rpn", "filter_proposals"),
    "anchor matching": ("rpn", "assign_targets_to_anchors"),
    "RPN loss (anchor sampling)": ("rpn", "compute_loss"),
    "RoI matching + sampling": ("roi_heads", "select_training_samples"),
    "box RoIAlign": ("roi_heads", "box_roi_pool"),
    "box head": ("roi_heads", "box_head"),
    "mask RoIAlign": ("roi_heads", "mask_roi_pool"),
    "mask head": ("roi_heads", "mask_head"),
    "mask targets": ("module", "_mask_targets"),
}


def xis_inputs(config: str):
    """The all-KD config, a CPU batch, the student's PV features for it (detached) and fresh X-IS heads:
    what the X-IS cost tables run one loss on."""
    from student.losses import X3KDLoss
    from student.models.student import build_student

    cfg = make_config(config, "all_kd")
    torch.manual_seed(0)
    batch = make_batch(cfg, 1, "cpu")
    pv = build_student(cfg).train()(batch).pv_features.detach()
    return cfg, batch, pv, X3KDLoss(cfg).train().xis_heads


def xis_stage_costs(config: str, repeats: int = 20) -> dict[str, float]:
    """Seconds per X-IS loss (min over repeats) of each stage of its forward, the rest of the forward,
    and the whole backward, on fixed PV features: where the X-IS cost sits (RoI ops, matching and
    sampling, NMS, heads). Wall-clock timers around each stage's call (CPU)."""
    import functools

    import student.losses.xis as xis_module
    from student.losses.xis import xis_loss

    cfg, batch, pv, heads = xis_inputs(config)
    pv.requires_grad_()
    spent: dict[str, float] = {}

    def timed(label, fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - t0
        return call

    for label, (where, name) in XIS_STAGES.items():
        owner = xis_module if where == "module" else functools.reduce(getattr, where.split("."), heads)
        target = getattr(owner, name)
        if isinstance(target, torch.nn.Module):
            target.forward = timed(label, target.forward)
        else:
            setattr(owner, name, timed(label, target))
    best: dict[str, float] = {}
    try:
        for i in range(repeats + 1):
            spent.clear()
            t0 = time.perf_counter()
            loss = xis_loss(heads, pv, batch.images.flatten(0, 1), batch.xis_targets, cfg.losses.xis)["loss_xis"]
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            row = {**spent, "rest of the forward": (t1 - t0) - sum(spent.values()), "backward (all stages)": t2 - t1}
            if i:
                best = {k: min(v, best.get(k, v)) for k, v in row.items()}
    finally:
        xis_module._mask_targets = getattr(xis_module._mask_targets, "__wrapped__", xis_module._mask_targets)
    return best


def roi_align_costs(config: str, repeats: int = 20) -> list[dict]:
    """X-IS's two RoI pools (box 7x7, mask 14x14) on the inputs one X-IS loss gives them, forward +
    backward, by each of OneLevelRoIAlign's methods (the sparse gather, the separable dense products),
    interleaved call by call; seconds (min over repeats) and the method "auto" picks for these sizes."""
    from student.losses.xis import OneLevelRoIAlign, xis_loss

    cfg, batch, pv, heads = xis_inputs(config)
    inputs = []
    for pool in (heads.roi_heads.box_roi_pool, heads.roi_heads.mask_roi_pool):
        def capture(features, boxes, image_shapes, pool=pool, forward=pool.forward):
            inputs.append((pool, features["0"].detach(), [b.detach() for b in boxes], image_shapes))
            return forward(features, boxes, image_shapes)
        pool.forward = capture
    xis_loss(heads, pv, batch.images.flatten(0, 1), batch.xis_targets, cfg.losses.xis)
    rows = []
    for pool, feat, boxes, image_shapes in inputs:
        feat = feat.clone().requires_grad_()
        methods = {m: OneLevelRoIAlign(pool.output_size, pool.sampling_ratio, m) for m in ("gather", "separable")}
        grad = torch.randn(sum(map(len, boxes)), feat.shape[1], pool.output_size, pool.output_size)
        best: dict[str, float] = {}
        for i in range(repeats + 1):
            for name, method in methods.items():
                t0 = time.perf_counter()
                (method({"0": feat}, boxes, image_shapes) * grad).sum().backward()
                spent = time.perf_counter() - t0
                feat.grad = None
                if i:
                    best[name] = min(spent, best.get(name, spent))
        rows.append({"pool": f"{pool.output_size}x{pool.output_size}", "features": list(feat.shape),
                     "rois": len(grad), "seconds": best, "auto": pool.method_for(feat.shape[-2:])})
    return rows


def criterion_costs(config_with, terms: tuple[str, ...], device: str, repeats: int = 20) -> dict[str, float]:
    """Seconds (min over repeats) of each KD term's loss alone, forward + backward, on fixed model
    outputs (leaves): the term's own arithmetic and bookkeeping, without the noise of a whole step.
    What its gradient then costs inside the model is the leave-one-out column's business."""
    import dataclasses

    from student.losses import X3KDLoss, total_loss
    from student.models.student import build_student

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cfg = config_with({})
    torch.manual_seed(0)
    batch = make_batch(cfg, 1, device)
    out = build_student(cfg).to(device).train()(batch)

    def leaf(x):
        if isinstance(x, torch.Tensor):
            return x.detach().requires_grad_(x.requires_grad)
        if isinstance(x, list):
            return [leaf(v) for v in x]
        if isinstance(x, dict):
            return {k: leaf(v) for k, v in x.items()}
        return x

    out = type(out)(**{f.name: leaf(getattr(out, f.name)) for f in dataclasses.fields(out)})
    costs = {}
    for term in terms:
        off = {t: {"enabled": False} for t in ("det", "ds", *TERMS) if t != term}
        crit = X3KDLoss(config_with(off)).to(device).train()
        samples = []
        for i in range(repeats + 1):
            sync()
            t0 = time.perf_counter()
            total_loss(crit(out, batch)).backward()
            sync()
            if i:
                samples.append(time.perf_counter() - t0)
        costs[term] = min(samples)
    return costs


def data_side_costs(cfg, batch_size: int, repeats: int = 5) -> dict[str, float]:
    """Seconds per sample (min over repeats) of what the dataset workers do for the KD terms and the
    targets, on inputs of the config's shapes."""
    import numpy as np

    from detection.bev_aug import BevAugConfig, sample_bev_aug, teacher_validity
    from detection.centerpoint_coder import augment_teacher_maps, teacher_task_map, warp_task_map
    from student.targets import xis_targets
    from student.targets import depth_image_to_feature_grid
    from detection.det_targets import build_det_targets

    batch = make_batch(cfg, 1, "cpu")
    t = batch.teacher
    bda = sample_bev_aug(BevAugConfig(), np.random.default_rng(0))
    h, w = cfg.image_size
    work = {
        # in the step since the maps travel as cached (StudentBatch.with_teacher_in_augmented_frame); here
        # per sample on the CPU, as the loader workers did it before
        "teacher maps: warp (features, heatmaps, regression), validity, task map": lambda: (
            augment_teacher_maps(bda, cfg.grid, t.bev_features[0], t.heatmaps[0], t.regression[0]),
            teacher_validity(bda, cfg.grid),
            warp_task_map(teacher_task_map(t.heatmaps[0], cfg.class_setup)[None], bda[None], cfg.grid)),
        "det targets (CenterPoint Gaussians, per object)": lambda: build_det_targets(
            batch.gt_boxes, batch.gt_labels, cfg.grid, cfg.class_setup),
        "depth targets to the feature grid": lambda: depth_image_to_feature_grid(
            batch.depth_targets[0].repeat_interleave(4, -1).repeat_interleave(4, -2), batch.ida[0], 4,
            (h // 16, w // 16)),
        "X-IS pseudo labels (select, move, paste masks)": lambda: xis_targets(
            t.inst_boxes[0], t.inst_labels[0], t.inst_scores[0], t.inst_masks[0], batch.ida[0], (h, w), 0.3),
    }
    out = {}
    for name, fn in work.items():
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        out[name] = min(samples)
    return out


def breakdown_summary(times: dict[str, list[float]]) -> dict:
    """Per-round pairs: the cases of one round ran back to back, so their ratio and differences see the
    same machine load; the median over rounds then drops rounds a burst of other work hit."""
    med = statistics.median
    rounds = range(len(times["no_kd"]))
    ratio = {name: med(times[name][r] / times["no_kd"][r] for r in rounds) for name in times}
    cost = {name.removeprefix("without_"): med(times["all_kd"][r] - times[name][r] for r in rounds)
            for name in times if name.startswith("without_")}
    return {"step_min": {name: min(v) for name, v in times.items()}, "ratio": ratio, "cost": cost}


def print_breakdown(rows: list[dict], batch_size: int, device: str, threads: int) -> None:
    print(f"KD overhead by term, batch {batch_size}, device {device}, torch threads {threads}; "
          f"{len(rows[0]['times']['no_kd'])} interleaved rounds; ratios and leave-one-out costs are "
          "medians of per-round pairs")
    print("| config | no-KD step s (min) | all-KD step s (min) | all / no-KD | all / no-KD, X-IS on torchvision's Mask R-CNN parts | "
          + " | ".join(f"without {t}: Δ s (% of no-KD)" for t in TERMS) + " |")
    print("| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in TERMS) + " |")
    for r in rows:
        sm = breakdown_summary(r["times"])
        st, ratio, cost = sm["step_min"], sm["ratio"], sm["cost"]
        tv = ratio.get("all_kd_torchvision_mask_rcnn")
        print(f"| {r['config']} | {st['no_kd']:.3f} | {st['all_kd']:.3f} | {ratio['all_kd']:.3f} | "
              + (f"{tv:.3f}" if tv else "-") + " | "
              + " | ".join("-" if t not in cost else f"{cost[t]:.3f} ({100 * cost[t] / st['no_kd']:.0f}%)"
                           for t in TERMS) + " |")
    print("\nstep seconds per round, in the order they ran:\n")
    for r in rows:
        for name, v in r["times"].items():
            print(f"- {r['config']} {name}: " + ", ".join(f"{x:.3f}" for x in v))
    print("\neach term's loss alone, forward + backward on fixed model outputs (min over 20):\n")
    print("| config | " + " | ".join(f"{t} ms" for t in TERMS) + " |")
    print("| --- | " + " | ".join("---:" for _ in TERMS) + " |")
    for r in rows:
        alone = r["terms_alone"]
        print(f"| {r['config']} | " + " | ".join(f"{alone[t] * 1000:.1f}" if t in alone else "-" for t in TERMS) + " |")
    staged = [r for r in rows if r.get("xis_stages")]
    if staged:
        stages = list(staged[0]["xis_stages"])
        print("\nX-IS by stage, ms per loss (min over 20; fixed PV features; forward stages, then the whole backward):\n")
        print("| config | " + " | ".join(stages) + " |")
        print("| --- | " + " | ".join("---:" for _ in stages) + " |")
        for r in staged:
            print(f"| {r['config']} | " + " | ".join(f"{r['xis_stages'][k] * 1000:.1f}" for k in stages) + " |")
    pooled = [r for r in rows if r.get("roi_align")]
    if pooled:
        print("\nX-IS RoIAlign by method, forward + backward per pool on one loss's inputs (min over 20, "
              "the methods interleaved):\n")
        print("| config | pool | features N×C×h×w | RoIs | sparse gather ms | separable products ms | auto picks |")
        print("| --- | --- | --- | ---: | ---: | ---: | --- |")
        for r in pooled:
            for p in r["roi_align"]:
                print(f"| {r['config']} | {p['pool']} | {'×'.join(map(str, p['features']))} | {p['rois']} | "
                      f"{p['seconds']['gather'] * 1000:.2f} | {p['seconds']['separable'] * 1000:.2f} | {p['auto']} |")
    print("\ndata loader, per sample (in the workers, beside the step):\n")
    print("| config | " + " | ".join(rows[0]["data"]) + " |")
    print("| --- | " + " | ".join("---:" for _ in rows[0]["data"]) + " |")
    for r in rows:
        print(f"| {r['config']} | " + " | ".join(f"{v * 1000:.1f} ms" for v in r["data"].values()) + " |")
    for r in rows:
        if r["profile"]:
            print(f"\ntorch.profiler, one all-KD step of {r['config']} (self time, by op and input shape):\n")
            print(r["profile"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["tiny", "r50"], choices=CONFIGS)
    ap.add_argument("--cost-only", action="store_true",
                    help="only parameters and inference cost (MACs and FLOPs) of each config, no timing")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per case (after one warm-up step)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--breakdown", action="store_true", help="attribute the KD overhead to each term (see above)")
    ap.add_argument("--terms", nargs="+", default=list(TERMS), choices=TERMS,
                    help="--breakdown: the terms to leave out one at a time (each costs a step per round)")
    ap.add_argument("--profile", type=int, default=0, metavar="ROWS",
                    help="--breakdown: also print torch.profiler's top ROWS ops of one all-KD step")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                    help="the columns to time (default: all; no_kd is always run, it is the ratios' base)")
    ap.add_argument("--case", nargs=2, metavar=("CONFIG", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cost_only:
        rows = [inference_cost(c) for c in args.configs]
        print("inference cost per sample (six cameras), MACs = FLOPs / 2 over matmuls and convolutions")
        print("| config | input | BEV grid | params M | GMACs | GFLOPs | " + " | ".join(f"{p} GMACs" for p in PARTS) + " |")
        print("| --- | --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in PARTS) + " |")
        for r in rows:
            print(f"| {r['config']} | {r['image_size'][0]}x{r['image_size'][1]} | {r['grid'][0]}x{r['grid'][1]} | "
                  f"{r['params_m']:.2f} | {r['gmacs']:.1f} | {r['gflops']:.1f} | "
                  + " | ".join(f"{r['parts_gmacs'][p]:.1f}" for p in PARTS) + " |")
        return
    if args.breakdown:
        rows = [run_breakdown(c, args.steps, args.batch_size, args.device, tuple(args.terms), args.profile)
                for c in args.configs]
        print_breakdown(rows, args.batch_size, args.device, torch.get_num_threads())
        return
    if args.case:
        print(json.dumps(run_case(args.case[0], args.case[1], args.steps, args.batch_size, args.device)))
        return
    rows = []
    for config in args.configs:
        for mode in [m for m in MODES if m == "no_kd" or m in args.modes]:
            cmd = [sys.executable, "-m", "bench.student_step", "--case", config, mode, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--device", args.device, "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(f"  done {config}/{mode}", file=sys.stderr)
    print(f"student step, batch {args.batch_size}, device {args.device}, torch threads {args.threads or torch.get_num_threads()}")
    print("| config | mode | step s (median) | step s (min) | time ratio | train GFLOPs/sample | FLOP ratio | peak MB "
          "| params inference M | params training M | inference GFLOPs/sample |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        base = next(x for x in rows if x["config"] == r["config"] and x["mode"] == "no_kd")
        print(f"| {r['config']} | {r['mode']} | {r['step_s']:.3f} | {r['min_step_s']:.3f} | "
              f"{r['min_step_s'] / base['min_step_s']:.2f} | {r['train_gflops']:.1f} | "
              f"{r['train_gflops'] / base['train_gflops']:.2f} | {r['peak_mb']:.0f} | {r['params_inference_m']:.2f} | "
              f"{r['params_training_m']:.2f} | {r['inference_gflops']:.1f} |")


if __name__ == "__main__":
    main()
