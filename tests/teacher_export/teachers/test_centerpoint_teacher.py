"""CenterPointTeacher (the LidarTeacher protocol) and mmdet3d checkpoint loading."""
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES
from teacher_export.teachers.lidar_protocol import LidarTeacher
from teacher_export.teachers.centerpoint.checkpoint import load_checkpoint
from teacher_export.teachers.centerpoint.configs import get_config
from teacher_export.teachers.centerpoint.model import CenterPoint
from teacher_export.teachers.centerpoint.teacher import CenterPointTeacher
from teacher_export.teachers.registry import build_lidar_teacher

FIXTURE = Path(__file__).parents[2] / "fixtures" / "centerpoint_pillar02_small.pt"


@pytest.fixture(scope="module")
def fx():
    return torch.load(FIXTURE, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def ckpt(fx, tmp_path_factory):
    """The fixture's weights as an mmdet3d-style checkpoint file."""
    path = tmp_path_factory.mktemp("ckpt") / "centerpoint.pth"
    torch.save({"meta": {"mmdet3d_version": "1.4.0"}, "state_dict": fx["state_dict"]}, path)
    return path


@pytest.fixture(scope="module")
def teacher_out(fx, ckpt):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        teacher = CenterPointTeacher(ckpt, config=fx["model_config"])
        pts = fx["points"].numpy()
        return teacher, teacher([pts, pts[: len(pts) // 3]])
    finally:
        torch.set_num_threads(threads)  # later tests in this worker keep their thread count


def test_teacher_follows_protocol(teacher_out):
    teacher, outs = teacher_out
    assert isinstance(teacher, LidarTeacher)
    assert teacher.grid.shape == (64, 64) and teacher.bev_channels == 48
    assert teacher.config["random_init"] is False and teacher.config["heatmap_classes"] == list(NUSCENES_CLASSES)
    assert len(outs) == 2
    for o in outs:
        assert o.bev_features.shape == (48, 64, 64) and o.bev_features.dtype == np.float32
        assert o.heatmaps.shape == (10, 64, 64) and o.regression.shape == (10, 64, 64)
        assert o.boxes.shape[1] == 9 and len(o.boxes) == len(o.scores) == len(o.labels)
        assert ((o.heatmaps >= 0) & (o.heatmaps <= 1)).all()
    # a smaller cloud is a different input: the batch is not one sample repeated
    assert not np.allclose(outs[0].bev_features, outs[1].bev_features)


def test_teacher_dense_maps_come_from_mmdet3d_head_outputs(fx, teacher_out):
    _, outs = teacher_out
    o = outs[0]
    np.testing.assert_allclose(o.bev_features, fx["neck"].numpy(), rtol=1e-4, atol=1e-5)
    head = fx["head"]
    task_classes = [("car",), ("truck", "construction_vehicle"), ("bus", "trailer"), ("barrier",),
                    ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone")]
    for t, names in enumerate(task_classes):
        for j, name in enumerate(names):
            np.testing.assert_allclose(o.heatmaps[NUSCENES_CLASSES.index(name)], head[t]["heatmap"][j].sigmoid().numpy(),
                                       atol=1e-5)
    # regression at each cell comes from the group with the highest class probability there
    best = torch.stack([h["heatmap"].sigmoid().max(0).values for h in head]).argmax(0)
    assert len(best.unique()) >= 3  # the selection really mixes groups in this fixture
    for t in range(6):
        sel = (best == t).numpy()
        ref = torch.cat([head[t][k] for k in ("reg", "height", "dim", "rot", "vel")]).numpy()
        np.testing.assert_allclose(o.regression[:, sel], ref[:, sel], atol=1e-4)


def test_teacher_boxes_match_mmdet3d_predict(fx, teacher_out):
    _, outs = teacher_out
    o, pred = outs[0], fx["pred"]
    boxes = o.boxes.copy()
    boxes[:, 2] -= boxes[:, 5] / 2
    np.testing.assert_allclose(boxes, pred["bboxes_3d"].numpy(), atol=1e-4)
    np.testing.assert_allclose(o.scores, pred["scores_3d"].numpy(), atol=1e-5)
    # the fixture's labels index the task-ordered class list, which for nuScenes is NUSCENES_CLASSES
    np.testing.assert_array_equal(o.labels, pred["labels_3d"].numpy())


def test_no_checkpoint_refuses_unless_random_init():
    with pytest.raises(UserInputError, match="no checkpoint"):
        build_lidar_teacher("centerpoint-pillar02")
    with pytest.raises(UserInputError, match="unknown"):
        build_lidar_teacher("pointpillars")


def test_random_init_is_reproducible(fx):
    a = CenterPointTeacher(None, config=fx["model_config"], random_init=True)
    b = CenterPointTeacher(None, config=fx["model_config"], random_init=True)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.config["random_init"] is True


def test_shipped_pillar02_config_builds_the_real_size():
    model = CenterPoint.from_mmdet3d_config(get_config("centerpoint-pillar02"))
    # mmdet3d's pillar02 model: 5.98 M parameters, 384-channel neck on a 128 x 128 grid, 414 state_dict keys
    assert sum(p.numel() for p in model.parameters()) == 5_982_854
    assert len(model.state_dict()) == 414
    assert model.pts_neck.out_channels == 384 and model.grid.shape == (128, 128)
    assert model.voxel_layer.max_voxels == 40000  # the test-time entry of (30000, 40000)


def test_mmdet3d_adapter_says_how_to_install():
    if importlib.util.find_spec("mmdet3d") is not None:
        pytest.skip("mmdet3d is installed")
    with pytest.raises(UserInputError, match=r"mmdet3d is not installed; pip install 'x3kd\[mmdet3d\]'"):
        build_lidar_teacher("mmdet3d-centerpoint", random_init=True)


def test_builtin_matches_mmdet3d_adapter(fx, tmp_path):
    """Where mmdet3d is installed: both teachers, same weights, same outputs."""
    pytest.importorskip("mmdet3d", reason="the mmdet3d extra is not installed (mmcv has no wheels: see README "
                                          "'Optional extras'; `make test` installs it when ../shared/wheels is present)")
    from teacher_export.teachers.mmdet3d_adapter import Mmdet3dCenterPointTeacher
    theirs = Mmdet3dCenterPointTeacher(None, random_init=True)
    path = tmp_path / "from_mmdet3d.pth"
    torch.save({"state_dict": theirs.model.state_dict()}, path)
    ours = CenterPointTeacher(path, config=theirs.config["model_config"])
    pts = fx["points"].numpy()
    a, b = ours([pts])[0], theirs([pts])[0]
    np.testing.assert_allclose(a.bev_features, b.bev_features, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.heatmaps, b.heatmaps, atol=1e-4)
    np.testing.assert_allclose(a.regression, b.regression, atol=1e-4)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    np.testing.assert_array_equal(a.labels, b.labels)


# --------------------------------------------------------------------------- checkpoint files

def _model(fx):
    return CenterPoint.from_mmdet3d_config(fx["model_config"])


def test_checkpoint_with_prefix_and_foreign_objects_loads(fx, tmp_path):
    """mmengine checkpoints carry objects of classes we do not have (message hub); wrappers add prefixes."""
    mod = types.ModuleType("x3kd_fake_mmengine")
    class HistoryBuffer:  # noqa: E306
        def __init__(self):
            self.log = np.arange(3.0)
    HistoryBuffer.__module__, HistoryBuffer.__qualname__ = mod.__name__, "HistoryBuffer"
    mod.HistoryBuffer = HistoryBuffer
    sys.modules[mod.__name__] = mod
    try:
        path = tmp_path / "wrapped.pth"
        torch.save({"message_hub": HistoryBuffer(), "state_dict": {"module." + k: v for k, v in fx["state_dict"].items()}},
                   path)
    finally:
        del sys.modules[mod.__name__]  # the loader must not need the class
    model = _model(fx)
    load_checkpoint(model, path)
    k = "pts_bbox_head.task_heads.3.heatmap.1.bias"
    assert torch.equal(model.state_dict()[k], fx["state_dict"][k])


def _bad(fx, tmp_path, kind):
    sd = dict(fx["state_dict"])
    path = tmp_path / f"{kind}.pth"
    if kind == "missing":
        sd.pop("pts_backbone.blocks.1.4.weight")
        torch.save({"state_dict": sd}, path)
    elif kind == "unexpected":
        sd["pts_bbox_head.extra.weight"] = torch.zeros(1)
        torch.save(sd, path)
    elif kind == "shape":
        sd["pts_neck.deblocks.0.1.weight"] = torch.zeros(7)
        torch.save({"state_dict": sd}, path)
    elif kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    elif kind == "truncated":
        torch.save({"state_dict": sd}, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "not_a_state_dict":
        torch.save({"epoch": 3}, path)
    return path


@pytest.mark.parametrize("kind,message", [
    ("missing", "missing key 'pts_backbone.blocks.1.4.weight'"),
    ("unexpected", "unexpected key 'pts_bbox_head.extra.weight'"),
    ("shape", "'pts_neck.deblocks.0.1.weight' has shape"),
    ("corrupt", "not a readable PyTorch checkpoint"),
    ("truncated", "checkpoint"),
    ("not_a_state_dict", "holds no state_dict"),
])
def test_bad_checkpoint_is_a_user_error_naming_the_file(fx, tmp_path, kind, message):
    path = _bad(fx, tmp_path, kind)
    with pytest.raises(UserInputError) as e:
        CenterPointTeacher(path, config=fx["model_config"])
    assert str(path) in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_checkpoint_file(fx, tmp_path):
    with pytest.raises(UserInputError, match="no such file"):
        CenterPointTeacher(tmp_path / "nope.pth", config=fx["model_config"])


def test_a_checkpoint_of_another_shipped_teacher_is_named(tmp_path):
    """The small demo teacher's checkpoint given to the full pillar02 teacher: the error says which
    --lidar-teacher it fits."""
    torch.manual_seed(0)
    small = CenterPoint.from_mmdet3d_config(get_config("centerpoint-pillar02-small"))
    path = tmp_path / "small.pth"
    torch.save({"state_dict": small.state_dict()}, path)
    with pytest.raises(UserInputError, match="it fits --lidar-teacher centerpoint-pillar02-small") as e:
        build_lidar_teacher("centerpoint-pillar02", checkpoint=path)
    assert "\n" not in str(e.value)
