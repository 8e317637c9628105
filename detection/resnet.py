"""torchvision's ResNets, randomly initialised, at any width: the one ResNet builder (the student's image
backbone and the Mask R-CNN teacher both build theirs here)."""
from __future__ import annotations

import torchvision
from torch import nn

_RESNETS = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
            50: torchvision.models.resnet50, 101: torchvision.models.resnet101}
RESNET_DEPTHS: tuple[int, ...] = tuple(sorted(_RESNETS))
_STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def build_resnet(depth: int, base_width: int = 64) -> nn.Module:
    """torchvision's ResNet-`depth`, randomly initialised; with `base_width` other than its 64, the same
    network (stem, four stages of torchvision's own blocks, same module names) with every width scaled
    by base_width / 64: ResNet-18 at base 32 costs a quarter of the FLOPs (the synthetic lab's student)."""
    if base_width == 64:
        return _RESNETS[depth](weights=None)
    block = torchvision.models.resnet.BasicBlock if depth < 50 else torchvision.models.resnet.Bottleneck
    net = nn.Module()
    net.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(base_width)
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    inplanes = base_width
    for i, blocks in enumerate(_STAGE_BLOCKS[depth]):
        planes, stride = base_width * 2 ** i, 1 if i == 0 else 2
        down = None
        if stride != 1 or inplanes != planes * block.expansion:
            down = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
        layers = [block(inplanes, planes, stride, down)]
        inplanes = planes * block.expansion
        layers += [block(inplanes, planes) for _ in range(blocks - 1)]
        setattr(net, f"layer{i + 1}", nn.Sequential(*layers))
    for m in net.modules():  # torchvision's ResNet initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return net
