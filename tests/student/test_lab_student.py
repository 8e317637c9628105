"""What the synthetic lab added to the student: a narrow ResNet, per-term gradient norms, and X-IS's
rule for images without pseudo-labels."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from cache_schema.errors import UserInputError
from student.config import XISLossConfig
from student.losses.xis import XISHeads, xis_loss
from detection.resnet import build_resnet
from student.models.image_backbone import ImageBackbone
from student.train import per_term_grad_norms


def _flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def test_narrow_resnet_is_torchvisions_network_at_a_fraction_of_the_cost():
    wide, narrow = torchvision.models.resnet18(weights=None), build_resnet(18, 32)
    wide_keys = {k for k in wide.state_dict() if not k.startswith("fc.")}
    assert set(narrow.state_dict()) == wide_keys  # same modules, same names
    assert narrow.layer4[1].conv2.weight.shape == (256, 256, 3, 3)
    assert type(narrow.layer1[0]) is type(wide.layer1[0])
    assert isinstance(build_resnet(18, 64), torchvision.models.ResNet)  # 64 is torchvision's own
    x = torch.randn(1, 3, 96, 256)
    a, b = ImageBackbone(18, 32, neck="fpn"), ImageBackbone(18, 32, neck="fpn", base_width=32)
    assert a(x).shape == b(x).shape == (1, 32, 6, 16)
    ratio = _flops(b, x) / _flops(a, x)
    assert 0.2 < ratio < 0.35, ratio  # ~a quarter: every conv has half the input and half the output channels
    assert build_resnet(50, 16).layer4[-1].bn3.num_features == 16 * 8 * 4  # Bottleneck expansion kept


def test_backbone_weights_of_the_configs_width_load_and_of_another_width_are_refused(tmp_path):
    narrow = build_resnet(18, 32)
    torch.save({"state_dict": narrow.state_dict()}, tmp_path / "narrow.pth")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "wide.pth")
    loaded = ImageBackbone(18, 32, weights=str(tmp_path / "narrow.pth"), neck="fpn", base_width=32)
    assert torch.equal(loaded.layer4[1].conv2.weight, narrow.layer4[1].conv2.weight)
    with pytest.raises(UserInputError, match="wide.pth: not a matching ResNet state dict"):
        ImageBackbone(18, 32, weights=str(tmp_path / "wide.pth"), neck="fpn", base_width=32)


def test_per_term_grad_norms_are_each_terms_own_gradient():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    other = torch.nn.Parameter(torch.randn(5))  # a criterion parameter: not the student's
    x = torch.randn(5)
    losses = {"loss_a": (w * x).sum() ** 2, "loss_b": (w ** 3).sum() + (other ** 2).sum(),
              "loss_c": (other * 2).sum(), "a/detail": torch.tensor(1.0)}
    norms = per_term_grad_norms(losses, [w])
    ga, = torch.autograd.grad(losses["loss_a"], w, retain_graph=True)
    gb, = torch.autograd.grad(losses["loss_b"], w, retain_graph=True)
    assert set(norms) == {"grad_norm/a", "grad_norm/b"}  # c does not reach the student; details are no terms
    assert torch.allclose(norms["grad_norm/a"], ga.norm()) and torch.allclose(norms["grad_norm/b"], gb.norm())
    sum(v for k, v in losses.items() if k.startswith("loss_")).backward()  # the graph is still there
    assert torch.allclose(w.grad, ga + gb)


def _xis_setup():
    torch.manual_seed(0)
    cfg = XISLossConfig(anchor_sizes=(16, 32), representation_size=32, mask_layers=(8,), rpn_pre_nms_top_n=100,
                        rpn_post_nms_top_n=20, box_batch_size_per_image=16, rpn_batch_size_per_image=32)
    heads = XISHeads(8, 3, cfg).train()
    feats = torch.randn(3, 8, 4, 8, requires_grad=True)
    images = torch.zeros(3, 3, 64, 128)
    mask = torch.zeros(64, 128)
    mask[10:40, 20:60] = 1
    full = {"boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0]]), "labels": torch.tensor([2]), "masks": mask[None]}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 64, 128)}
    return cfg, heads, feats, images, full, empty


def test_xis_skips_images_without_pseudo_labels():
    cfg, heads, feats, images, full, empty = _xis_setup()
    torch.manual_seed(1)  # the RPN and RoI samplers draw at random
    skipped = xis_loss(heads, feats, images, [empty, full, empty], cfg)
    torch.manual_seed(1)
    alone = xis_loss(heads, feats[1:2], images[1:2], [full], cfg)
    assert torch.allclose(skipped["loss_xis"], alone["loss_xis"]) and skipped["xis/images"] == 1
    skipped["loss_xis"].backward()
    assert feats.grad[0].abs().sum() == 0 and feats.grad[2].abs().sum() == 0 and feats.grad[1].abs().sum() > 0

    feats.grad = None
    nothing = xis_loss(heads, feats, images, [empty, empty, empty], cfg)
    assert nothing["loss_xis"].item() == 0.0 and nothing["loss_xis"].requires_grad
    heads.zero_grad(set_to_none=True)
    nothing["loss_xis"].backward()
    assert feats.grad.abs().sum() == 0
    # still connected to every head parameter: data parallelism sees a gradient for each
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in heads.parameters())

    feats.grad = None
    background = XISLossConfig(**{**cfg.__dict__, "empty_images": "background"})
    kept = xis_loss(heads, feats, images, [empty, full, empty], background)
    kept["loss_xis"].backward()
    assert kept["xis/images"] == 3 and feats.grad[0].abs().sum() > 0  # empty images pull toward "no object"
    with pytest.raises(UserInputError, match="loss.xis.empty_images"):
        XISLossConfig(empty_images="ignore")
