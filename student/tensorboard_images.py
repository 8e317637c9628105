"""Pictures of one training step for TensorBoard (`train.image_every`): the student's maps beside the
teacher's and the GT's, and its depth beside the LiDAR target."""
from __future__ import annotations

import numpy as np

from detection.pictures import colorize, feature_rgb

def _panel(*maps: np.ndarray, gap: int = 2, min_height: int = 256) -> np.ndarray:
    """Pictures of one height side by side with a white gap, small ones enlarged by whole pixels to
    about `min_height` (nearest neighbour, so every map cell stays a visible square)."""
    factor = max(1, min_height // maps[0].shape[0])
    big = [np.repeat(np.repeat(m, factor, 0), factor, 1) for m in maps]
    parts = []
    for m in big:
        parts += [m, np.full((m.shape[0], gap, 3), 255, np.uint8)]
    return np.concatenate(parts[:-1], 1)


def training_images(outputs, batch, cfg, sample: int = 0, camera: int = 0) -> dict[str, np.ndarray]:
    """(H, W, 3) uint8 pictures of one training step for TensorBoard, for batch element `sample`:

    bev/heatmaps      student | teacher | GT Gaussians (max over classes, magma 0..1; grey = absent)
    bev/features      student BEV features | teacher BEV features (3 principal components each)
    camera/depth      the student's expected depth | the LiDAR depth target of one camera (turbo,
                      same range; black = no target); camera student only
    BEV maps are drawn with y up, like every BEV picture here."""
    import torch

    from detection.det_targets import build_det_targets
    from detection.center_head import concat_task_heatmaps

    def up(m: np.ndarray) -> np.ndarray:  # BEV row 0 is y_min: flip so y points up
        return np.ascontiguousarray(m[::-1])

    with torch.no_grad():
        student_heat = concat_task_heatmaps(outputs.head_outputs)[sample].float().sigmoid().amax(0)
        student_heat = student_heat.cpu().numpy()
        grey = np.full((*student_heat.shape, 3), 96, np.uint8)
        teacher_heat = None
        if batch.teacher is not None and batch.teacher.heatmaps is not None:
            teacher_heat = batch.teacher.heatmaps[sample].float().amax(0).cpu().numpy()
        gt_heat = None
        if batch.gt_boxes:
            targets = build_det_targets([batch.gt_boxes[sample].cpu()], [batch.gt_labels[sample].cpu()], cfg.grid,
                                        cfg.class_setup)
            gt_heat = torch.cat([t.heatmap[0] for t in targets]).amax(0).numpy()
        images = {"bev/heatmaps": _panel(*(up(colorize(m, 0, 1)) if m is not None else grey
                                          for m in (student_heat, teacher_heat, gt_heat)))}
        feats = [up(feature_rgb(outputs.bev_features[sample].float().cpu().numpy()))]
        if batch.teacher is not None and batch.teacher.bev_features is not None:
            feats.append(up(feature_rgb(batch.teacher.bev_features[sample].float().cpu().numpy())))
        else:
            feats.append(grey)
        images["bev/features"] = _panel(*feats)
        if outputs.depth_logits is None:  # the radar student has no cameras
            return images
        n_cams = batch.images.shape[1]
        logits = outputs.depth_logits[sample * n_cams + camera].float()
        lo, hi, step = cfg.depth_net.d_bound
        centres = lo + (torch.arange(logits.shape[0], dtype=torch.float32, device=logits.device) + 0.5) * step
        expected = (logits.softmax(0) * centres[:, None, None]).sum(0).cpu().numpy()
        pred = colorize(expected, 0, hi, "turbo")
        if batch.depth_targets is not None:
            target = batch.depth_targets[sample, camera].float().cpu().numpy()
            tgt = colorize(target, 0, hi, "turbo")
            tgt[target <= 0] = 0
        else:
            tgt = np.zeros_like(pred)
        images["camera/depth"] = _panel(pred, tgt)
    return images
