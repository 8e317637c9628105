"""BEVDepth checkpoints load into the student under BEVDepth's own names, and bad ones are one line."""
import pytest
import torch
from click.testing import CliRunner

from cache_schema.errors import UserInputError
from student.bevdepth_interop import load_bevdepth_weights, save_as_bevdepth, to_bevdepth_state_dict
from student.config import StudentConfig
from tests.student.configs import small_student_config
from student.models.student import build_student
from tests.student.test_xis_and_model import _synthetic_batch

# Names as BEVDepth's modules give them (bevdepth/layers/backbones/base_lss_fpn.py: BaseLSSFPN with
# mmdet's ResNet, mmdet3d's SECONDFPN, its DepthNet and DepthAggregation; heads/bev_depth_head.py:
# mmdet's ResNet trunk without maxpool, SECONDFPN neck, mmdet3d's CenterHead), inside a Lightning
# module whose model is `self.model`.
BEVDEPTH_NAMES = (
    "model.backbone.img_backbone.conv1.weight", "model.backbone.img_backbone.bn1.running_mean",
    "model.backbone.img_backbone.layer1.0.conv1.weight", "model.backbone.img_backbone.layer2.0.downsample.0.weight",
    "model.backbone.img_neck.deblocks.0.0.weight", "model.backbone.img_neck.deblocks.3.1.bias",
    "model.backbone.depth_net.reduce_conv.0.weight", "model.backbone.depth_net.bn.running_var",
    "model.backbone.depth_net.depth_mlp.fc1.weight", "model.backbone.depth_net.context_se.conv_expand.bias",
    "model.backbone.depth_net.depth_conv.0.conv1.weight", "model.backbone.depth_net.depth_conv.3.aspp2.atrous_conv.weight",
    "model.backbone.depth_net.depth_conv.3.global_avg_pool.1.weight", "model.backbone.depth_net.depth_conv.4.weight",
    "model.backbone.depth_net.depth_conv.4.conv_offset.bias", "model.backbone.depth_net.depth_conv.5.weight",
    "model.backbone.depth_net.context_conv.weight", "model.backbone.depth_aggregation_net.conv.3.weight",
    "model.backbone.depth_aggregation_net.out_conv.0.bias", "model.head.trunk.conv1.weight", "model.head.trunk.bn1.bias",
    "model.head.trunk.layer1.0.conv2.weight", "model.head.trunk.layer3.1.bn2.weight",
    "model.head.trunk.layer2.0.downsample.1.weight", "model.head.neck.deblocks.0.0.weight",
    "model.head.shared_conv.conv.weight", "model.head.task_heads.0.reg.0.conv.weight",
    "model.head.task_heads.5.heatmap.1.bias",
)


def _bevdepth_like_tiny() -> StudentConfig:
    d = small_student_config().to_dict()
    d["key_frames"] = 2
    d["backbone"].update(neck="secondfpn")
    d["depth_net"].update(residual_blocks=3, aspp=True, deformable=True, aggregation=True)
    d["bev_encoder"].update(neck="secondfpn", stage_blocks=[2, 2, 2])
    return StudentConfig.from_dict(d)


def test_names_follow_bevdepths_modules_and_the_weights_round_trip(tmp_path):
    cfg = _bevdepth_like_tiny()
    torch.manual_seed(0)
    source = build_student(cfg).eval()
    names = set(to_bevdepth_state_dict(source))
    assert set(BEVDEPTH_NAMES) <= names
    assert not any(n.startswith(("model.image_backbone", "model.bev_encoder", "model.view_transform")) for n in names)
    path = tmp_path / "bevdepth.ckpt"
    save_as_bevdepth(source, path)  # {"state_dict": ...}, as a Lightning checkpoint holds it
    torch.manual_seed(1)
    target = build_student(cfg).eval()
    load_bevdepth_weights(target, path)
    for k, v in source.state_dict().items():
        assert torch.equal(v, target.state_dict()[k]), k
    batch = _synthetic_batch(cfg)
    batch.prev_images, batch.prev_intrinsics, batch.prev_cam2lidar = batch.images, batch.intrinsics, batch.cam2lidar
    with torch.no_grad():
        assert torch.equal(source(batch).head_outputs[0]["heatmap"], target(batch).head_outputs[0]["heatmap"])


def test_a_checkpoint_that_does_not_fit_names_its_first_bad_key(tmp_path):
    cfg = _bevdepth_like_tiny()
    model = build_student(cfg)
    good = to_bevdepth_state_dict(model)
    cases = {
        "missing": {k: v for k, v in good.items() if k != "model.head.trunk.conv1.weight"},
        "shape": {**good, "model.backbone.depth_net.context_conv.weight": torch.zeros(3, 3, 1, 1)},
        "foreign": {**good, "model.head.some_other_module.weight": torch.zeros(1)},
    }
    expected = {"missing": "no 'model.head.trunk.conv1.weight'", "shape": "'model.backbone.depth_net.context_conv.weight' "
                "has shape", "foreign": "'model.head.some_other_module.weight' has no counterpart"}
    for name, sd in cases.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": sd}, path)
        with pytest.raises(UserInputError, match=expected[name]) as e:
            load_bevdepth_weights(build_student(cfg), path)
        assert len(str(e.value).splitlines()) == 1 and str(path) in str(e.value)
    # the light student of another config does not fit either
    with pytest.raises(UserInputError, match="BEVDepth checkpoint"):
        load_bevdepth_weights(build_student(small_student_config()), tmp_path / "shape.ckpt")


def test_convert_then_eval_loads_it_and_training_starts_from_it(tmp_path):
    import yaml

    from student.cli import main
    from student.deploy import load_student
    from student.provenance import describe
    from student.train_config import TrainConfig
    from student.train import init_weights

    cfg = _bevdepth_like_tiny()
    source = build_student(cfg)
    bev = tmp_path / "bevdepth.ckpt"
    save_as_bevdepth(source, bev)
    config_file = tmp_path / "student.yaml"
    config_file.write_text(yaml.safe_dump(TrainConfig(cfg).to_dict()))
    out = tmp_path / "converted.pt"
    r = CliRunner().invoke(main, ["convert-bevdepth", "--checkpoint", str(bev), "--config", str(config_file),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    model, loaded_cfg, info = load_student(out)
    assert loaded_cfg.student == cfg and not info["ema"]
    assert "converted from a BEVDepth checkpoint" in describe(info["provenance"])
    for k, v in source.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    # train.init_from takes either file
    for path in (bev, out):
        fresh = build_student(cfg)
        init_weights(fresh, str(path))
        assert torch.equal(fresh.head.shared_conv.conv.weight, source.head.shared_conv.conv.weight)
    r = CliRunner().invoke(main, ["convert-bevdepth", "--checkpoint", str(bev), "--config", str(config_file),
                                  "--set", "model.depth_net.aspp=false", "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "has no counterpart" in r.stderr
