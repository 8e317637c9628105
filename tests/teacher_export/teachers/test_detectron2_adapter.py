"""The detectron2 image teacher, run for real: detectron2's own Mask R-CNN R50-FPN config (bundled with
detectron2), weights made here so that every RoI is confidently a COCO 'person', the adapter's protocol
(boxes in the input's pixels, labels mapped to nuScenes classes, sorted scores, 28x28 mask
probabilities, padding) and an export through it that validates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES

pytest.importorskip("detectron2", reason="detectron2 is not installed (not on the package registry: build it from "
                                         "source; `make test` installs the wheel in ../shared/wheels when present)")

from teacher_export.teachers.image_protocol import pad_instances  # noqa: E402
from teacher_export.teachers.registry import build_image_teacher

CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"
PERSON = 0  # detectron2's COCO thing class 0


@pytest.fixture(scope="module")
def person_weights(tmp_path_factory) -> Path:
    """A randomly initialised detectron2 Mask R-CNN whose box classifier calls every RoI 'person'."""
    teacher = build_image_teacher("detectron2", config_file=CONFIG, random_init=True)
    state = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    state["roi_heads.box_predictor.cls_score.weight"].zero_()
    bias = torch.full_like(state["roi_heads.box_predictor.cls_score.bias"], -10.0)
    bias[PERSON] = 10.0
    state["roi_heads.box_predictor.cls_score.bias"] = bias
    # No box refinement: detections are the RPN's proposals (random regression deltas give empty boxes).
    state["roi_heads.box_predictor.bbox_pred.weight"].zero_()
    state["roi_heads.box_predictor.bbox_pred.bias"].zero_()
    path = tmp_path_factory.mktemp("d2") / "person.pth"
    torch.save({"model": state}, path)
    return path


def _camera_images(dataroot: Path, n: int = 3) -> list[np.ndarray]:
    paths = sorted((dataroot / "samples" / "CAM_FRONT").glob("*.jpg"))[:n]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def test_detectron2_teacher_follows_the_image_teacher_protocol(person_weights, synthetic_dataroot):
    teacher = build_image_teacher("detectron2", config_file=CONFIG, checkpoint=str(person_weights),
                                  score_threshold=0.5, max_instances=5)
    assert teacher.class_names[PERSON] == "person" and len(teacher.class_names) == 80
    images = _camera_images(synthetic_dataroot)
    outputs = teacher(images)
    assert len(outputs) == len(images)
    assert sum(len(o) for o in outputs) > 0
    for image, out in zip(images, outputs):
        h, w = image.shape[:2]
        assert len(out) <= 5
        assert out.boxes.shape == (len(out), 4) and out.masks.shape == (len(out), 28, 28)
        assert (out.labels == NUSCENES_CLASSES.index("pedestrian")).all()  # COCO person -> nuScenes pedestrian
        assert (out.scores >= 0.5).all() and (np.diff(out.scores) <= 0).all()
        assert (out.boxes[:, 0] >= 0).all() and (out.boxes[:, 2] <= w + 1e-3).all()
        assert (out.boxes[:, 1] >= 0).all() and (out.boxes[:, 3] <= h + 1e-3).all()
        assert (out.boxes[:, 2] > out.boxes[:, 0]).all() and (out.boxes[:, 3] > out.boxes[:, 1]).all()
        assert ((out.masks >= 0) & (out.masks <= 1)).all()
    padded = pad_instances(outputs, 5)
    assert padded.labels.shape == (len(images), 5)
    for i, out in enumerate(outputs):
        assert (padded.labels[i, len(out):] == -1).all() and (padded.labels[i, :len(out)] >= 0).all()
    assert teacher.config["class_names"][PERSON] == "person"


def test_empty_boxes_are_dropped_like_torchvision_does():
    from teacher_export.teachers.image_classes import select_instances

    boxes = np.array([[0, 0, 10, 10], [5, 0, 160, 0], [3, 3, 3.005, 9]], np.float32)
    out = select_instances(boxes, np.array([0, 0, 0]), np.array([0.9, 0.95, 0.99], np.float32),
                           np.zeros((3, 28, 28), np.float32), np.array([8]), 0.5, 5)
    assert out.boxes.tolist() == [[0, 0, 10, 10]]


def test_a_class_table_that_does_not_fit_the_model_is_refused_in_one_line():
    from teacher_export.teachers.image_classes import NUIMAGES_CLASSES

    with pytest.raises(UserInputError, match=r"has 80 classes .* class_names has 10") as e:
        build_image_teacher("detectron2", config_file=CONFIG, random_init=True, class_names=list(NUIMAGES_CLASSES))
    assert "\n" not in str(e.value)
    with pytest.raises(UserInputError, match="neither a file nor a config"):
        build_image_teacher("detectron2", config_file="no/such/config.yaml", random_init=True)


def test_export_with_the_detectron2_teacher_validates(person_weights, synthetic_dataroot, tmp_path):
    import yaml

    from cache_schema import CacheReader
    from teacher_export.cli import main

    config = tmp_path / "export.yaml"
    config.write_text(yaml.safe_dump({"image_teacher": "detectron2", "image_checkpoint": str(person_weights),
                                      "image_options": {"config_file": CONFIG, "class_names": "coco",
                                                        "score_threshold": 0.5},
                                      "lidar_teacher": "none", "max_instances": 4}))
    out = tmp_path / "d2.zarr"
    r = CliRunner().invoke(main, ["export", "--config", str(config), "--dataroot", str(synthetic_dataroot),
                                  "--version", "v1.0-mini", "--split", "mini_train", "--out", str(out), "--limit", "2"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["validate", str(out)])
    assert r.exit_code == 0, r.output
    reader = CacheReader(str(out))
    labels = np.stack([reader[i].image_teacher.labels for i in range(len(reader))])
    assert (labels == NUSCENES_CLASSES.index("pedestrian")).any() and set(np.unique(labels)) <= {-1, 8}
    teacher = reader.meta.provenance["image_teacher"]
    assert teacher["name"] == "detectron2" and teacher["config"]["class_names"][PERSON] == "person"
