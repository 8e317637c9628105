"""The student's BEVDepth parts: SECONDFPN necks, the depth net's ASPP and deformable conv, depth
aggregation, and a tiny student with all of them training end to end."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from student.config import StudentConfig

from tests.student.configs import small_student_config
from student.losses import X3KDLoss, total_loss
from student.models.bev_encoder import BevEncoder
from student.models.depth_net import ASPP, DeformConv, DepthAggregation, DepthNet
from student.models.image_backbone import ImageBackbone
from student.models.student import build_student
from tests.student.test_xis_and_model import _synthetic_batch

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_secondfpn_image_neck_brings_all_four_stages_to_stride_16():
    bb = ImageBackbone(18, 32, neck="secondfpn").eval()
    kinds = [(type(b[0]).__name__, b[0].kernel_size[0], b[0].stride[0]) for b in bb.deblocks]
    assert kinds == [("Conv2d", 4, 4), ("Conv2d", 2, 2), ("ConvTranspose2d", 1, 1), ("ConvTranspose2d", 2, 2)]
    assert [b[0].in_channels for b in bb.deblocks] == [64, 128, 256, 512]
    assert bb(torch.randn(2, 3, 64, 128)).shape == (2, 32, 4, 8)
    # 176 is not a multiple of 32: the upsampled C5 is one cell wider than C4 and is brought to C4's size
    assert bb(torch.randn(1, 3, 64, 176)).shape == (1, 32, 4, 11)


def test_deformable_conv_starts_as_the_grouped_conv_and_learns_its_offsets():
    torch.manual_seed(0)
    dcn = DeformConv(16, groups=4)
    x = torch.randn(2, 16, 7, 9, requires_grad=True)
    y = dcn(x)
    assert torch.allclose(y, F.conv2d(x, dcn.weight, padding=1, groups=4), atol=1e-5)
    y.square().sum().backward()
    # zero-initialised offsets still receive a gradient (through the bilinear sampling)
    assert dcn.conv_offset.weight.grad.abs().sum() > 0 and dcn.conv_offset.bias.grad.abs().sum() > 0


def test_aspp_and_the_full_depth_net_shapes():
    aspp = ASPP(16, 16).eval()
    assert aspp(torch.randn(2, 16, 5, 11)).shape == (2, 16, 5, 11)
    net = DepthNet(32, 16, 8, 12, residual_blocks=3, aspp=True, deformable=True).eval()
    assert [type(m).__name__ for m in net.depth_conv] == ["BasicBlock"] * 3 + ["ASPP", "DeformConv", "Conv2d"]
    depth, context = net(torch.randn(6, 32, 4, 11), torch.randn(6, 27))
    assert depth.shape == (6, 12, 4, 11) and context.shape == (6, 8, 4, 11)


def test_depth_aggregation_mixes_depth_and_width_within_an_image_row_only():
    torch.manual_seed(0)
    da = DepthAggregation(4).eval()
    x = torch.randn(2, 6, 3, 5, 4)  # [M, D, h, w, C]
    y = da(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[0, 2, 1, 2] += 1.0  # one frustum point: depth bin 2, row 1, column 2
    d = (da(x2) - y).abs().sum(-1)[0]  # [D, h, w]
    assert d[3, 1, 2] > 0 and d[2, 1, 3] > 0  # the neighbouring bin and column change
    assert d[:, 0].sum() == 0 and d[:, 2].sum() == 0  # other rows do not


def test_secondfpn_bev_encoder_is_bevdepths_trunk_and_neck():
    enc = BevEncoder(8, (16, 32, 64), (2, 2, 2), (1, 2, 2), 32, neck="secondfpn")
    assert enc.stem[0].kernel_size == (7, 7) and enc.stem[0].stride == (2, 2)
    assert [b[0].stride[0] for b in enc.deblocks] == [1, 2, 4, 8]  # input, then stages at 1/2, 1/4, 1/8
    assert enc(torch.randn(2, 8, 32, 32)).shape == (2, 32, 32, 32)


def test_defaults_are_bevdepths_student():
    cfg = StudentConfig()
    assert (cfg.backbone.neck, cfg.backbone.neck_channels) == ("secondfpn", 512)
    dn = cfg.depth_net
    assert (dn.mid_channels, dn.context_channels, dn.num_bins, dn.residual_blocks) == (512, 80, 112, 3)
    assert dn.aspp and dn.deformable and dn.aggregation
    assert cfg.bev_encoder.neck == "secondfpn" and cfg.bev_encoder.out_channels == 256


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_builds_its_student(path):
    from student.train_config import load_train_config

    cfg = load_train_config(path)
    model = build_student(cfg.student)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_a_tiny_student_with_every_bevdepth_part_trains():
    torch.manual_seed(0)
    base = small_student_config().to_dict()
    base["backbone"].update(neck="secondfpn")
    base["depth_net"].update(residual_blocks=3, aspp=True, deformable=True, aggregation=True)
    base["bev_encoder"].update(neck="secondfpn")
    cfg = StudentConfig.from_dict(base)
    model, crit = build_student(cfg), X3KDLoss(cfg)
    batch = _synthetic_batch(cfg)
    out = model(batch)
    assert out.bev_features.shape == (1, 32, 32, 32)
    total_loss(crit(out, batch)).backward()
    for name, mod in [("neck", model.image_backbone.deblocks), ("aspp", model.depth_net.depth_conv[3]),
                      ("dcn offsets", model.depth_net.depth_conv[4].conv_offset),
                      ("aggregation", model.view_transform.depth_aggregation), ("bev neck", model.bev_encoder.deblocks)]:
        assert isinstance(mod, nn.Module)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters()), name
