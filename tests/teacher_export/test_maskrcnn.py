"""The torchvision Mask R-CNN image teacher, with random (seeded) weights on tiny images.

Mask R-CNN R50 is slow on CPU: the teacher is built once per module and each forward runs on 64×96
images. Random weights make confident but meaningless detections, which is all shape, ordering,
padding and checkpoint tests need.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES
from teacher_export.teachers.image_classes import label_table, select_instances
from teacher_export.teachers.image_protocol import MASK_SIZE, ImageTeacher, ImageTeacherOutput, pad_instances
from teacher_export.teachers.registry import build_image_teacher
from teacher_export.teachers.maskrcnn import COCO_CLASSES, MaskRCNNConfig, MaskRCNNTeacher

H, W = 64, 96
MAX_INSTANCES = 5
SETTINGS = dict(class_names="nuimages", score_threshold=0.05, max_instances=MAX_INSTANCES)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    return [a, small, a]  # the repeated image must come back identical, whatever the grouping by size


@pytest.fixture(scope="module")
def teacher() -> MaskRCNNTeacher:
    return MaskRCNNTeacher(MaskRCNNConfig(random_init=True, seed=0, **SETTINGS))


@pytest.fixture(scope="module")
def outputs(teacher, images) -> list[ImageTeacherOutput]:
    return teacher(images)


@pytest.fixture(scope="module")
def checkpoint(teacher, tmp_path_factory):
    """The fixture teacher's weights saved the way training scripts do: wrapped, with DDP's prefix."""
    path = tmp_path_factory.mktemp("ckpt") / "maskrcnn_nuimages.pth"
    torch.save({"model": {f"module.{k}": v for k, v in teacher.model.state_dict().items()}, "epoch": 3}, path)
    return path


def test_outputs_follow_the_protocol(teacher, outputs, images):
    assert isinstance(teacher, ImageTeacher)
    json.dumps(teacher.config)  # must be storable as metadata
    assert teacher.config["num_classes"] == 11 and teacher.max_instances == MAX_INSTANCES
    assert len(outputs) == len(images)
    for out, img in zip(outputs, images):
        h, w = img.shape[:2]
        m = len(out)
        assert 0 < m <= MAX_INSTANCES
        assert out.boxes.shape == (m, 4) and out.boxes.dtype == np.float32
        assert out.labels.shape == (m,) and out.labels.dtype == np.int64
        assert out.scores.shape == (m,) and out.scores.dtype == np.float32
        assert out.masks.shape == (m, MASK_SIZE, MASK_SIZE) and out.masks.dtype == np.float32
        assert ((out.labels >= 0) & (out.labels < len(NUSCENES_CLASSES))).all()
        assert (np.diff(out.scores) <= 0).all() and (out.scores >= SETTINGS["score_threshold"]).all()
        assert (out.masks >= 0).all() and (out.masks <= 1).all()
        assert (out.boxes[:, 2] >= out.boxes[:, 0]).all() and (out.boxes[:, 3] >= out.boxes[:, 1]).all()
        assert (out.boxes >= 0).all() and (out.boxes[:, [0, 2]] <= w).all() and (out.boxes[:, [1, 3]] <= h).all()
    assert_same(outputs[:1], outputs[2:])


def assert_same(a: list[ImageTeacherOutput], b: list[ImageTeacherOutput]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for field in ("boxes", "labels", "scores", "masks"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))


def test_deterministic(teacher, images, outputs):
    # Same batch, same numbers (a different batch composition may differ in the last float bits).
    assert_same(teacher(images), outputs)


def test_padding(outputs):
    k = MAX_INSTANCES + 3
    padded = pad_instances(outputs, k)
    assert padded.boxes.shape == (3, k, 4) and padded.masks.shape == (3, k, MASK_SIZE, MASK_SIZE)
    assert padded.counts.tolist() == [len(o) for o in outputs]
    for i, n in enumerate(padded.counts.tolist()):
        assert (padded.labels[i, n:] == -1).all() and (padded.scores[i, n:] == 0).all()
        assert not padded.boxes[i, n:].any() and not padded.masks[i, n:].any()
    for back, out in zip(padded.unpad(), outputs):
        for field in ("boxes", "labels", "scores", "masks"):
            np.testing.assert_array_equal(getattr(back, field), getattr(out, field))
    with pytest.raises(ValueError):
        pad_instances(outputs, 1)


def test_checkpoint_round_trip(checkpoint, images, outputs):
    # A different seed: equal outputs can only come from the loaded weights.
    loaded = MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(checkpoint), seed=1, **SETTINGS))
    assert len(loaded.config["checkpoint_sha256"]) == 64
    assert_same(loaded(images), outputs)

    # The same weights run at half resolution: boxes still come back in the input's pixels.
    half = MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(checkpoint), min_size=H // 2, max_size=W // 2, **SETTINGS))
    out = half(images[:1])[0]
    assert len(out) > 0 and (out.boxes[:, [0, 2]] <= W).all() and (out.boxes[:, [1, 3]] <= H).all()
    assert out.boxes[:, 2].max() > W // 2 + 1  # unscaled boxes could not reach past the resized width


def test_num_classes_is_read_from_the_checkpoint(teacher, tmp_path):
    # A COCO-sized checkpoint (91 classes): only the predictors' class dimension differs.
    sd = teacher.model.state_dict()
    for key in ("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred",
                "roi_heads.mask_predictor.mask_fcn_logits"):
        per_class = sd[f"{key}.weight"].shape[0] // 11
        sd[f"{key}.weight"] = torch.zeros((91 * per_class,) + sd[f"{key}.weight"].shape[1:])
        sd[f"{key}.bias"] = torch.zeros(91 * per_class)
    path = tmp_path / "coco.pth"
    torch.save(sd, path)
    coco = MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(path), class_names="coco"))
    assert coco.num_classes == 91 == len(COCO_CLASSES)
    with pytest.raises(UserInputError, match=str(path)):
        MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(path), class_names="coco", num_classes=11))
    with pytest.raises(UserInputError, match="class_names"):
        MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(path), class_names="nuimages"))


def test_bad_checkpoints_name_the_file(teacher, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x04 definitely not a checkpoint" * 10)
    foreign = tmp_path / "foreign.pth"
    torch.save({"backbone.weight": torch.zeros(3)}, foreign)
    misfit = tmp_path / "misfit.pth"
    sd = dict(teacher.model.state_dict())
    sd.pop("backbone.fpn.layer_blocks.0.0.bias")
    sd["roi_heads.box_head.fc6.weight"] = torch.zeros(7, 7)
    torch.save(sd, misfit)
    pickled_args = tmp_path / "train_checkpoint.pth"  # what torchvision's train.py saves: args pickled along
    torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=0.02)}, pickled_args)
    for path, why in ((tmp_path / "missing.pth", "no such file"), (corrupt, "not a readable"),
                      (pickled_args, "weights-only.*state_dict alone"),
                      (foreign, "not a torchvision Mask R-CNN"), (misfit, "1 missing keys.*1 shape mismatches")):
        with pytest.raises(UserInputError, match=f"{path}.*{why}"):
            MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(path), class_names="nuimages"))


def test_refuses_to_run_without_weights():
    with pytest.raises(UserInputError, match="--image-checkpoint or --random-init"):
        MaskRCNNTeacher(MaskRCNNConfig())
    with pytest.raises(UserInputError, match="unknown image teacher"):
        build_image_teacher("yolo")
    with pytest.raises(UserInputError, match="unknown options"):
        build_image_teacher("maskrcnn", random_init=True, score_thresh=0.5)


def test_detectron2_missing_is_a_clear_error():
    pytest.importorskip("torch")
    try:
        import detectron2  # noqa: F401
        pytest.skip("detectron2 is installed")
    except ImportError:
        pass
    with pytest.raises(UserInputError, match="detectron2 is not installed and is not on the package registry"):
        build_image_teacher("detectron2", config_file="x.yaml", class_names=["car"], random_init=True)


def test_class_table_and_selection():
    table = label_table(COCO_CLASSES, {"person": "pedestrian", "car": "car"}, source="test")
    assert table[COCO_CLASSES.index("person")] == NUSCENES_CLASSES.index("pedestrian")
    assert table[COCO_CLASSES.index("car")] == NUSCENES_CLASSES.index("car")
    assert (table >= 0).sum() == 2  # everything else (dog, airplane, background...) is dropped
    with pytest.raises(UserInputError, match="not the detection classes"):
        label_table(COCO_CLASSES, {"person": "human"}, source="test")
    # another dataset's class table (Waymo's): the labels index it
    waymo = label_table(COCO_CLASSES, {"person": "pedestrian", "car": "vehicle", "bus": "vehicle"}, source="test",
                        targets=("vehicle", "pedestrian", "cyclist", "sign"))
    assert waymo[COCO_CLASSES.index("bus")] == waymo[COCO_CLASSES.index("car")] == 0
    assert waymo[COCO_CLASSES.index("person")] == 1 and (waymo >= 0).sum() == 3
    with pytest.raises(UserInputError, match="not among the model's classes"):
        label_table(COCO_CLASSES, {"lorry": "truck"}, source="test")

    person, car, dog = (COCO_CLASSES.index(c) for c in ("person", "car", "dog"))
    scores = np.array([0.2, 0.9, 0.95, 0.6, 0.6, 0.7], np.float32)
    model_labels = np.array([car, person, dog, car, person, car])
    boxes = np.arange(24, dtype=np.float32).reshape(6, 4)
    masks = np.random.default_rng(0).uniform(size=(6, 28, 28)).astype(np.float32)
    out = select_instances(boxes, model_labels, scores, masks, table, score_threshold=0.5, max_instances=3)
    # dog dropped (unmapped), 0.2 dropped (threshold), sorted by score, ties in model order, cut at 3.
    assert out.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    np.testing.assert_array_equal(out.boxes, boxes[[1, 5, 3]])
    np.testing.assert_array_equal(out.masks, masks[[1, 5, 3]])
    assert [NUSCENES_CLASSES[i] for i in out.labels] == ["pedestrian", "car", "car"]


def test_agrees_with_torchvision_forward(teacher, images):
    """Running the parts ourselves gives torchvision's own detections, minus the pasting of masks."""
    batch = [images[0], images[0]]
    ours = teacher(batch)
    with torch.inference_mode():  # teacher() just set the transform to these images' native size
        theirs = teacher.model([torch.from_numpy(img).permute(2, 0, 1).float() / 255 for img in batch])
    for out, ref in zip(ours, theirs):
        n = len(out)
        assert n == MAX_INSTANCES  # every nuImages class is mapped: the top detections survive in order
        np.testing.assert_allclose(out.boxes, ref["boxes"][:n].numpy(), rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(out.scores, ref["scores"][:n].numpy(), rtol=1e-6)
        np.testing.assert_array_equal(out.labels, teacher.label_table[ref["labels"][:n].numpy()])
        assert ref["masks"].shape[-2:] == (H, W)  # torchvision pasted them; we keep the 28×28 originals
