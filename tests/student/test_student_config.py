"""StudentConfig: loads from plain dicts / YAML, rejects unknown keys and bad values with one line."""
import pytest

from cache_schema.errors import UserInputError
from student.config import StudentConfig
from student.train_config import load_train_config
from tests.student.configs import small_student_config


def test_defaults_are_the_r50_bevdepth_setup_on_the_teacher_grid():
    cfg = StudentConfig()
    assert cfg.grid.shape == (128, 128) and cfg.grid.cell_size == pytest.approx((0.8, 0.8))
    assert cfg.depth_net.num_bins == 112 and cfg.backbone.depth == 50 and cfg.image_size == (256, 704)
    assert cfg.losses.ds.weight == 3.0 and len(cfg.class_setup.tasks) == 6


def test_round_trip_through_a_dict_and_yaml(tmp_path):
    """One file schema: the training config's (model + loss blocks), which every shipped config uses."""
    import yaml

    from student.train_config import TrainConfig

    cfg = small_student_config(xod={"gamma": 1.5}, det={"weight": 0})
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    p = tmp_path / "student.yaml"
    p.write_text(yaml.safe_dump(TrainConfig(cfg).to_dict()))
    loaded = load_train_config(p).student
    assert loaded == cfg and loaded.losses.xod.gamma == 1.5 and loaded.losses.det.weight == 0.0
    assert loaded.grid.shape == (32, 32)


@pytest.mark.parametrize("name", ["tiny.yaml", "tiny_pillar02.yaml", "r50_256x704.yaml", "lab.yaml"])
def test_every_shipped_config_loads(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / name
    assert load_train_config(path).student.grid.shape[0] > 0


@pytest.mark.parametrize("bad,match", [
    ({"losses": {"xfd": {"wieght": 1.0}}}, "wieght"),
    ({"backbone": {"depth": 42}}, "backbone.depth"),
    ({"image_size": [64, 170]}, "image_size"),
    ({"losses": {"xfd": {"feature": "pv"}}}, "loss.xfd.feature"),
    ({"depth_net": {"d_bound": [1, 2]}}, "d_bound"),
    ({"tasks": [["car"]]}, "tasks"),
    ({"test": {"nms_type": "soft"}}, "model.test.nms_type"),
    ({"losses": {"xod": {"weight": "strong"}}}, "losses.xod.weight"),
])
def test_bad_values_are_user_errors_naming_the_option(bad, match):
    with pytest.raises(UserInputError, match=match):
        StudentConfig.from_dict(bad)


def test_exponent_without_a_dot_is_a_number():
    """YAML 1.1 reads `4e-3` as a string; a float option takes it as the number it spells."""
    from student.train_config import load_train_config
    from tests.student.run_paths import TINY_YAML

    cfg = load_train_config(TINY_YAML, ["optim.lr=4e-3", "loss.xfd.weight=1e0"])
    assert cfg.optim.lr == 0.004 and cfg.student.losses.xfd.weight == 1.0


def test_missing_yaml_file_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        load_train_config(tmp_path / "nope.yaml")


def test_check_store_refuses_mismatched_grid_classes_and_channels():
    from cache_schema.grid import BevGrid
    from cache_schema.layout import StoreConfig

    cfg = small_student_config()
    ok = StoreConfig(num_samples=1, grid=cfg.grid, bev_channels=cfg.teacher_bev_channels)
    cfg.check_store(ok)
    with pytest.raises(UserInputError, match="grid"):
        cfg.check_store(StoreConfig(num_samples=1, grid=BevGrid(), bev_channels=cfg.teacher_bev_channels))
    with pytest.raises(UserInputError, match="channels"):
        cfg.check_store(StoreConfig(num_samples=1, grid=cfg.grid, bev_channels=7))
    no_fd = small_student_config(xfd={"enabled": False}, xat={"enabled": False})
    no_fd.check_store(StoreConfig(num_samples=1, grid=cfg.grid, bev_channels=7))  # features unused: fine


def test_test_time_decoding_comes_from_the_yaml():
    """model.test holds the NMS and thresholds; the student's box coder uses them on its grid."""
    from student.models.student import build_student

    cfg = StudentConfig.from_dict({**small_student_config().to_dict(),
                                   "test": {"nms_type": "circle", "score_threshold": 0.25, "post_max_size": 50}})
    coder = build_student(cfg).box_coder
    assert (coder.nms_type, coder.score_threshold, coder.post_max_size) == ("circle", 0.25, 50)
    assert coder.grid == cfg.grid and coder.nms_thr == StudentConfig().test.nms_thr
