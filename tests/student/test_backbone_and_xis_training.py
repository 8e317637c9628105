"""Backbone weights come from a local file only; X-IS heads learn from pseudo-labels."""
import pytest
import torch
import torchvision

from cache_schema.errors import UserInputError
from student.config import XISLossConfig
from student.losses.xis import XISHeads, xis_loss
from student.models.image_backbone import ImageBackbone


def test_backbone_loads_a_local_torchvision_state_dict(tmp_path):
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    bb = ImageBackbone(18, 8, weights=str(path))
    assert torch.equal(bb.stem[0].weight, ref.conv1.weight)
    assert torch.equal(bb.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert bb(torch.randn(1, 3, 64, 96)).shape == (1, 8, 4, 6)


def test_backbone_weight_errors_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="missing.pth: no such file"):
        ImageBackbone(18, 8, weights=str(tmp_path / "missing.pth"))
    state = torchvision.models.resnet18(weights=None).state_dict()
    bad = tmp_path / "r34_as_r18.pth"
    torch.save(state, bad)
    with pytest.raises(UserInputError, match="not a matching ResNet"):
        ImageBackbone(34, 8, weights=str(bad))  # missing blocks
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(state, bad)
    with pytest.raises(UserInputError, match="not a matching ResNet"):
        ImageBackbone(18, 8, weights=str(bad))  # wrong shape
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match="junk.pth: not a readable PyTorch checkpoint"):
        ImageBackbone(18, 8, weights=str(junk))


def test_xis_heads_fit_pseudo_labels():
    torch.manual_seed(0)
    cfg = XISLossConfig(anchor_sizes=(16, 32), representation_size=32, mask_layers=(8,), rpn_pre_nms_top_n=100,
                        rpn_post_nms_top_n=20, box_batch_size_per_image=16, rpn_batch_size_per_image=32)
    heads = XISHeads(8, 3, cfg).train()
    feats = torch.randn(2, 8, 4, 8, requires_grad=True)
    images = torch.zeros(2, 3, 64, 128)
    mask = torch.zeros(64, 128)
    mask[10:40, 20:60] = 1
    targets = [{"boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0]]), "labels": torch.tensor([2]), "masks": mask[None]},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 64, 128)}]
    opt = torch.optim.Adam(list(heads.parameters()) + [feats], lr=3e-3)
    first = None
    for _ in range(30):
        loss = xis_loss(heads, feats, images, targets, cfg)["loss_xis"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
