"""mmdet3d's nuImages Mask R-CNN R50-FPN (`configs/nuimages/mask-rcnn_r50_fpn_1x_nuim.py`) built by mmdet
itself, given random weights with realistic BatchNorm statistics, saved as mmdet saves a checkpoint, and
run twice on one image: by mmdet (its `predict`, and its mask head on the final boxes for the 28x28
probabilities) and by the built-in `--image-teacher maskrcnn` loading that file as it is. Same
detections, boxes to 1e-3 px, scores to 1e-5, masks to 1e-4. Needs the mmdet3d extra (`make test`
installs it when ../shared/wheels is present)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES

mmdet3d = pytest.importorskip("mmdet3d", reason="the mmdet3d extra is not installed (mmcv has no wheels: see README "
                                                "'Optional extras'; `make test` installs it when ../shared/wheels "
                                                "is present)")

from teacher_export.teachers.maskrcnn import MaskRCNNConfig, MaskRCNNTeacher  # noqa: E402

CONFIG = Path(mmdet3d.__file__).parent / ".mim" / "configs" / "nuimages" / "mask-rcnn_r50_fpn_1x_nuim.py"
NUIM_CLASSES = ("car", "truck", "trailer", "bus", "construction_vehicle", "bicycle", "motorcycle", "pedestrian",
                "traffic_cone", "barrier")  # mmdet3d's nuImages order
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # the configs' img_norm_cfg (RGB)


@pytest.fixture(scope="module")
def mmdet_model():
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    model_cfg = Config.fromfile(str(CONFIG)).model
    model_cfg.pop("pretrained", None)  # no download
    model_cfg.pop("_scope_", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        model.init_weights()
        # BatchNorm statistics of real activations instead of (0, 1), as a trained file has
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
                m.reset_running_stats()
        model.backbone.train()
        with torch.no_grad():
            model.backbone(torch.randn(2, 3, 192, 320))
        model.eval()
        with torch.no_grad():
            # confident, varied classes (an untrained classifier scores every class ~1/11)
            head = model.roi_head.bbox_head.fc_cls
            head.weight.normal_(0, 0.3)
            head.bias.normal_(0, 1.0)
            head.bias[-1] = 1.0  # mmdet's background is the last row
    return model


@pytest.fixture(scope="module")
def checkpoint(mmdet_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mmdet") / "mask-rcnn_r50_fpn_1x_nuim.pth"
    torch.save({"meta": {"dataset_meta": {"classes": NUIM_CLASSES}}, "state_dict": mmdet_model.state_dict()}, path)
    return path


def scene(h: int, w: int) -> np.ndarray:
    """Discs of random colours on black, with noise: something for the RPN to find."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 40)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def mmdet_detections(model, img: np.ndarray) -> dict[str, np.ndarray]:
    """mmdet's boxes, scores, labels (nuScenes indices) and 28x28 mask probabilities of its labels, the
    image normalised and padded to 32 as its data preprocessor does, at scale 1."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import bbox2roi

    h, w = img.shape[:2]
    hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
    x = (torch.from_numpy(img).permute(2, 0, 1).float() - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    x = torch.nn.functional.pad(x, (0, wp - w, 0, hp - h))[None]
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                         batch_input_shape=(hp, wp), pad_shape=(hp, wp)))
    with torch.no_grad():
        pred = model.predict(x, [sample], rescale=False)[0].pred_instances
        logits = model.roi_head._mask_forward(model.extract_feat(x), bbox2roi([pred.bboxes]))["mask_preds"]
    labels = pred.labels
    return {"boxes": pred.bboxes.numpy(), "scores": pred.scores.numpy(),
            "labels": np.array([NUSCENES_CLASSES.index(NUIM_CLASSES[i]) for i in labels.tolist()], dtype=np.int64),
            "masks": logits[torch.arange(len(labels)), labels].sigmoid().numpy()}


@pytest.mark.parametrize("size", [(226, 400), (192, 320)], ids=["padded-to-32", "multiple-of-64"])
def test_builtin_maskrcnn_runs_an_mmdet_nuimages_checkpoint_as_mmdet_does(mmdet_model, checkpoint, size):
    img = scene(*size)
    theirs = mmdet_detections(mmdet_model, img)
    teacher = MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(checkpoint), score_threshold=0.05, max_instances=100))
    assert teacher.cfg.flavor == "mmdet"
    assert teacher.class_names == ["__background__", *NUIM_CLASSES]  # from the file's metadata
    ours = teacher([img])[0]

    assert len(theirs["scores"]) > 20 and len(set(theirs["labels"].tolist())) >= 2  # a test that can fail
    assert len(ours) == len(theirs["scores"])
    order = same_order(ours.scores, ours.boxes, theirs["scores"], theirs["boxes"])
    np.testing.assert_array_equal(ours.labels, theirs["labels"][order])
    np.testing.assert_allclose(ours.scores, theirs["scores"][order], atol=1e-5)
    np.testing.assert_allclose(ours.boxes, theirs["boxes"][order], atol=1e-3)
    np.testing.assert_allclose(ours.masks, theirs["masks"][order], atol=1e-4)


def same_order(scores: np.ndarray, boxes: np.ndarray, their_scores: np.ndarray, their_boxes: np.ndarray) -> np.ndarray:
    """Their detections in our order. Both lists are sorted by score; RoIs of identical features (flat
    image regions) get exactly equal scores, whose order each NMS leaves as it likes: within equal
    scores, pair by box."""
    order = np.arange(len(their_scores))
    for score in np.unique(scores):
        ours_tied = np.flatnonzero(scores == score)
        theirs_tied = np.flatnonzero(np.abs(their_scores - score) <= 1e-5)
        if len(ours_tied) > 1 and len(ours_tied) == len(theirs_tied):
            gap = np.abs(boxes[ours_tied, None] - their_boxes[None, theirs_tied]).max(-1)
            order[ours_tied] = theirs_tied[gap.argmin(1)]
    return order


def test_torchvisions_own_rules_would_not_match(mmdet_model, checkpoint):
    """What `flavor: mmdet` changes is needed: the same weights under torchvision's anchors, box coder and
    RoIAlign give other detections."""
    img = scene(226, 400)
    theirs = mmdet_detections(mmdet_model, img)
    plain = MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(checkpoint), score_threshold=0.05, max_instances=100,
                                           flavor="torchvision"))([img])[0]
    n = min(len(plain), len(theirs["scores"]))
    assert n > 0
    assert np.abs(plain.boxes[:n] - theirs["boxes"][:n]).max() > 0.5


def test_a_caffe_style_mmdet_checkpoint_is_refused(mmdet_model, tmp_path):
    path = tmp_path / "mask-rcnn_r50_caffe_fpn_1x_nuim.pth"
    meta = {"dataset_meta": {"classes": NUIM_CLASSES}, "cfg": "model = dict(backbone=dict(style='caffe'))"}
    torch.save({"meta": meta, "state_dict": mmdet_model.state_dict()}, path)
    with pytest.raises(UserInputError, match="caffe"):
        MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(path)))


def test_the_mmdet_teacher_gives_what_the_builtin_gives_on_the_same_file(checkpoint):
    """`--image-teacher mmdet` runs the config through mmdet; on a Mask R-CNN its detections and 28x28
    masks are the built-in teacher's (which matches mmdet, above)."""
    from teacher_export.teachers.registry import build_image_teacher

    img = scene(226, 400)
    theirs = build_image_teacher("mmdet", config_file="nuimages/mask-rcnn_r50_fpn_1x_nuim.py",
                                 checkpoint=str(checkpoint), score_threshold=0.05, max_instances=100)
    assert theirs.class_names == list(NUIM_CLASSES)
    a = theirs([img])[0]
    b = MaskRCNNTeacher(MaskRCNNConfig(checkpoint=str(checkpoint), score_threshold=0.05, max_instances=100))([img])[0]
    assert len(a) == len(b) > 20
    order = same_order(b.scores, b.boxes, a.scores, a.boxes)
    np.testing.assert_array_equal(b.labels, a.labels[order])
    np.testing.assert_allclose(b.boxes, a.boxes[order], atol=1e-3)
    np.testing.assert_allclose(b.masks, a.masks[order], atol=1e-4)


@pytest.mark.parametrize("config", ["nuimages/cascade-mask-rcnn_r50_fpn_1x_nuim.py", "nuimages/htc_r50_fpn_1x_nuim.py"])
def test_cascade_and_htc_run_through_the_mmdet_teacher(config, tmp_path):
    """Random weights, a checkpoint round trip, and the image-teacher protocol: boxes inside the image,
    nuScenes labels, sorted scores, 28x28 probabilities; the masks are the last stage's (mmdet's
    average over stages), not pasted images."""
    from teacher_export.teachers.image_protocol import pad_instances
    from teacher_export.teachers.registry import build_image_teacher

    options = dict(config_file=config, score_threshold=0.0, max_instances=16)
    teacher = build_image_teacher("mmdet", random_init=True, **options)
    path = tmp_path / "model.pth"
    torch.save({"meta": {"dataset_meta": {"classes": NUIM_CLASSES}}, "state_dict": teacher.model.state_dict()}, path)
    reloaded = build_image_teacher("mmdet", checkpoint=str(path), **options)
    img = scene(160, 288)
    out, again = teacher([img])[0], reloaded([img])[0]
    assert 0 < len(out) <= 16
    np.testing.assert_array_equal(out.scores, again.scores)
    assert np.all(np.diff(out.scores) <= 0)
    assert out.masks.shape == (len(out), 28, 28) and 0 <= out.masks.min() and out.masks.max() <= 1
    assert np.all((out.boxes >= -1e-3) & (out.boxes <= np.array([288, 160, 288, 160]) + 1e-3))
    assert set(out.labels.tolist()) <= set(range(len(NUSCENES_CLASSES)))
    assert pad_instances([out], 16).boxes.shape == (1, 16, 4)


def test_the_mmdet_teacher_refuses_what_it_cannot_run(tmp_path):
    from teacher_export.teachers.registry import build_image_teacher

    with pytest.raises(UserInputError, match="config_file"):
        build_image_teacher("mmdet", random_init=True)
    with pytest.raises(UserInputError, match="neither a file nor a config"):
        build_image_teacher("mmdet", config_file="nuimages/no_such.py", random_init=True)
    boxes_only = tmp_path / "boxes_only.py"
    boxes_only.write_text(f"_base_ = ['{CONFIG}']\nmodel = dict(roi_head=dict(mask_roi_extractor=None, mask_head=None))\n")
    with pytest.raises(UserInputError, match="no mask head"):
        build_image_teacher("mmdet", config_file=str(boxes_only), random_init=True)
    bad = tmp_path / "other.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, bad)
    with pytest.raises(UserInputError, match="does not fit"):
        build_image_teacher("mmdet", config_file="nuimages/mask-rcnn_r50_fpn_1x_nuim.py", checkpoint=str(bad))


def test_an_export_through_the_mmdet_teacher_runs_a_random_init_cascade_and_validates(synthetic_dataroot, tmp_path):
    import yaml
    from click.testing import CliRunner

    from cache_schema import CacheReader
    from teacher_export.cli import main

    config = tmp_path / "export.yaml"
    config.write_text(yaml.safe_dump({"image_teacher": "mmdet",
                                      "image_options": {"config_file": "nuimages/cascade-mask-rcnn_r50_fpn_1x_nuim.py",
                                                        "score_threshold": 0.0},
                                      "lidar_teacher": "none", "max_instances": 4}))
    out = tmp_path / "mmdet.zarr"
    r = CliRunner().invoke(main, ["export", "--config", str(config), "--random-init", "--dataroot",
                                  str(synthetic_dataroot), "--version", "v1.0-mini", "--split", "mini_train",
                                  "--out", str(out), "--limit", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["validate", str(out)])
    assert r.exit_code == 0, r.output
    sample = CacheReader(str(out))[0].image_teacher
    assert (sample.labels >= 0).any()
    provenance = CacheReader(str(out)).meta.provenance["image_teacher"]
    assert provenance["name"] == "mmdet" and provenance["config"]["class_names"] == list(NUIM_CLASSES)
