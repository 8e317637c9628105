"""The test-sized student (not configs/tiny.yaml, which the demo trains): sizes that keep a forward and
backward pass of every loss term at a fraction of a second on one CPU core."""
from typing import Any

from student.config import StudentConfig


def small_student_config(**loss_overrides: Any) -> StudentConfig:
    """ResNet-18, 64x176 images, 32x32 BEV (0.8 m cells), 8 depth bins; the light
    necks and depth net (no ASPP, deformable conv or depth aggregation) to keep tests fast."""
    return StudentConfig.from_dict({
        "image_size": [64, 176],
        "key_frames": 1,
        "point_cloud_range": [-12.8, -12.8, -5.0, 12.8, 12.8, 3.0],
        "teacher_bev_channels": 16,
        "backbone": {"depth": 18, "neck": "fpn", "neck_channels": 32},
        "depth_net": {"d_bound": [1.0, 13.0, 1.5], "mid_channels": 32, "context_channels": 16,
                      "residual_blocks": 2, "aspp": False, "deformable": False, "aggregation": False},
        "bev_encoder": {"stage_channels": [16, 32, 64], "stage_blocks": [1, 1, 1], "out_channels": 32,
                        "neck": "fpn"},
        "head": {"share_conv_channel": 16, "head_conv": 16},
        "losses": {"xat": {"hidden_channels": 16},
                   "xis": {"anchor_sizes": [16, 32, 64], "representation_size": 64,
                           "mask_layers": [16, 16], "rpn_pre_nms_top_n": 200, "rpn_post_nms_top_n": 50,
                           "box_batch_size_per_image": 32, "rpn_batch_size_per_image": 32},
                   **loss_overrides},
    })
