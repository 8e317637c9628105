"""Named option sets for `x3kd-cache fit-teacher --preset NAME`; command-line options override them.

`demo`: what `make demo` fits on the synthetic demo dataset (`x3kd-cache make-synthetic --preset demo`,
80 mini_train samples at 352x198) within about five minutes on 2 CPU cores: the small pillar02
CenterPoint on the student's 128x128 grid, and Mask R-CNN with a ResNet-18 FPN of 64 channels, anchors
scaled down for the small images (objects there are 8-160 px wide) and fewer proposals. Both start from
random weights (nothing can be downloaded), so these are weak teachers: they localise objects, their
class confidences stay low (see the fit-teacher section of the README).
"""
from __future__ import annotations

import copy
from typing import Any

from cache_schema.errors import UserInputError

FIT_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "demo": {
        "lidar": {"config": "centerpoint-pillar02-small", "steps": 100, "lr": 1e-2, "batch_size": 2},
        "image": {"steps": 40, "lr": 2e-3, "batch_size": 2, "image_options": {
            "backbone": "resnet18", "fpn_channels": 64, "anchor_sizes": [8, 16, 32, 64, 128],
            "rpn_pre_nms_top_n": 300, "rpn_post_nms_top_n": 100, "detections_per_img": 50,
            "score_threshold": 0.3,
            # training only
            "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300, "box_batch_size_per_image": 128}},
    },
    "lab": {
        "lidar": {"config": "centerpoint-pillar02-lab", "steps": 3000, "lr": 4e-3, "batch_size": 2, "augment": True},
        "image": {"steps": 3000, "lr": 2e-3, "batch_size": 4, "image_options": {
            "backbone": "resnet18", "base_width": 16, "fpn_channels": 64, "anchor_sizes": [8, 16, 32, 64, 128],
            "rpn_pre_nms_top_n": 300, "rpn_post_nms_top_n": 100, "detections_per_img": 50,
            "score_threshold": 0.3,
            "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300, "box_batch_size_per_image": 128}},
    },
}


def fit_preset(name: str, kind: str) -> dict[str, Any]:
    """A fresh copy of preset `name`'s options for `kind` ('lidar' or 'image')."""
    if name not in FIT_PRESETS:
        raise UserInputError(f"--preset {name!r}: unknown; known: {', '.join(sorted(FIT_PRESETS))}")
    return copy.deepcopy(FIT_PRESETS[name][kind])
