"""`fit-teacher image`: Mask R-CNN (ResNet-18 FPN) fitted on the tiny synthetic dataset's cameras."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cache_schema.grid import NUSCENES_CLASSES
from teacher_export.fit.image import CLASS_NAMES, fit_image_teacher
from teacher_export.fit.options import FitOptions
from teacher_export.teachers.registry import build_image_teacher
from teacher_export.teachers.maskrcnn import MaskRCNNConfig, build_maskrcnn

SMALL = {"backbone": "resnet18", "fpn_channels": 32, "anchor_sizes": [8, 16, 32, 64, 128], "rpn_pre_nms_top_n": 100,
         "rpn_post_nms_top_n": 50, "detections_per_img": 20, "rpn_pre_nms_top_n_train": 200,
         "rpn_post_nms_top_n_train": 100, "box_batch_size_per_image": 64}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fitted(synthetic_dataroot, tmp_path_factory):
    # One sample's camera images in every step (batch >= its images): the loss must fall on data it sees
    # again and again; constant learning rate (under 10 steps), seed 0.
    out = tmp_path_factory.mktemp("fit_image") / "maskrcnn.pth"
    opts = FitOptions(str(synthetic_dataroot), "v1.0-mini", "mini_train", str(out), steps=6, lr=1e-3,
                      batch_size=6, limit=1, image_options=dict(SMALL))
    return fit_image_teacher(opts), opts


def test_fit_reduces_the_loss(fitted):
    result, _ = fitted
    assert len(result.losses) == 6 and all(np.isfinite(result.losses))
    assert result.losses[-1] < 0.8 * result.losses[0]


def test_checkpoint_loads_into_the_teacher_with_the_nuscenes_classes(fitted, synthetic_dataroot):
    result, _ = fitted
    assert result.teacher_options["class_names"] == CLASS_NAMES and result.teacher_options["backbone"] == "resnet18"
    teacher = build_image_teacher("maskrcnn", checkpoint=result.checkpoint, **result.teacher_options)
    assert teacher.num_classes == 11
    # identity map: model class k+1 is nuScenes class k, background unmapped
    assert teacher.label_table.tolist() == [-1, *range(len(NUSCENES_CLASSES))]
    assert teacher.config["backbone"] == "resnet18" and teacher.config["fpn_channels"] == 32  # provenance
    state = torch.load(result.checkpoint, weights_only=True)
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v.cpu(), state[k]), k
    img = next((synthetic_dataroot / "samples" / "CAM_FRONT").glob("*.jpg"))
    out = teacher([np.array(Image.open(img).convert("RGB"))])[0]
    assert out.boxes.shape[1] == 4 and np.all((out.labels >= 0) & (out.labels < len(NUSCENES_CLASSES)))


def test_resnet50_backbone_keeps_torchvision_names_and_light_backbones_differ():
    cfg = MaskRCNNConfig(class_names=CLASS_NAMES)
    from torchvision.models.detection import maskrcnn_resnet50_fpn
    r50 = build_maskrcnn(cfg, 11)
    ref = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=11)
    assert {k: v.shape for k, v in r50.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    r18 = build_maskrcnn(MaskRCNNConfig(class_names=CLASS_NAMES, backbone="resnet18"), 11)
    n18 = sum(p.numel() for p in r18.parameters())
    assert n18 < 0.75 * sum(p.numel() for p in r50.parameters())  # the RoI box head (12.8M) is shared
    assert "backbone.body.layer4.1.conv2.weight" in r18.state_dict()  # BasicBlocks: no conv3


def test_checkpoint_of_another_backbone_is_refused(fitted):
    from cache_schema.errors import UserInputError
    result, _ = fitted
    with pytest.raises(UserInputError, match="backbone"):
        build_image_teacher("maskrcnn", checkpoint=result.checkpoint,
                            **{**result.teacher_options, "backbone": "resnet34"})


def test_resnet50_refuses_another_fpn_width():
    from cache_schema.errors import UserInputError
    with pytest.raises(UserInputError, match="fpn_channels"):
        build_maskrcnn(MaskRCNNConfig(class_names=CLASS_NAMES, fpn_channels=64), 11)
