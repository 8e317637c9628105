"""The student's image backbone pretrained on generic recognition: the synthetic lab's "ImageNet".

Real BEVDepth students start from an ImageNet-pretrained ResNet (the paper motivates X-IS by keeping what
pretraining gave the image features). Nothing can be downloaded here, so the lab pretrains its own, the
way ImageNet pretraining works: object crops classified by what they show, ten detection classes plus
background, cut from the camera images of a synthetic dataset made with another seed than the lab's (so
other worlds: no scene of the lab's train or val split), labelled by the dataset's own GT boxes projected
into each camera, never by a teacher's output. The result is a torchvision-named ResNet state dict that
`model.backbone.weights` loads (its classifier is dropped).

    x3kd-cache make-synthetic lab_pretrain/data --preset lab --seed 1000
    x3kd-student pretrain-backbone --dataroot lab_pretrain/data --version v1.0-trainval \\
        --config configs/lab.yaml --out teachers/lab/backbone.pth

Crops are square windows around each projected 2D box (with `context` of its size around it), resized
to `crop_size`; background crops are random windows that overlap no box. Training is plain supervised
classification (AdamW, cosine schedule, random flips and scale jitter); the held-out split's top-1
accuracy is reported.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES
from dataset_access.images import read_rgb
from dataset_access.nuscenes.samples import NuScenesSamples
from dataset_access.projection import project_boxes
from detection.resnet import build_resnet
from detection.weights import save_atomic

from .data.cameras import IMAGE_MEAN, IMAGE_STD

log = logging.getLogger(__name__)

BACKGROUND = len(NUSCENES_CLASSES)  # the eleventh class


@dataclass(frozen=True)
class PretrainOptions:
    """What `x3kd-student pretrain-backbone` takes."""

    dataroot: str
    version: str
    out: str
    depth: int = 18
    base_width: int = 64
    split: str = "train"
    val_split: str | None = "val"
    crop_size: int = 64
    context: float = 0.25  # the crop reaches this fraction of the box's size beyond it on each side
    min_box_pixels: float = 8.0
    background_per_image: int = 2
    steps: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    limit: int | None = None  # samples of each split (tests)

    def __post_init__(self) -> None:
        for name in ("crop_size", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise UserInputError(f"--lr: must be > 0, got {self.lr}")
        if self.depth not in (18, 34, 50, 101):
            raise UserInputError(f"backbone depth {self.depth}: expected 18, 34, 50 or 101")


@dataclass
class Crops:
    """Crops as uint8 [N, S, S, 3] and their class (0..9 the detection classes, 10 background)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _square_window(x1: float, y1: float, x2: float, y2: float, context: float) -> tuple[float, float, float]:
    """Centre and half-side of the square around a box with `context` of its size around it."""
    half = max(x2 - x1, y2 - y1) * (0.5 + context)
    return (x1 + x2) / 2, (y1 + y2) / 2, half


def _crop(image: np.ndarray, cx: float, cy: float, half: float, size: int) -> np.ndarray:
    """The square window (padded with the image's mean colour where it leaves the image) resized to size."""
    from PIL import Image

    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    canvas = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    canvas[:] = image.reshape(-1, 3).mean(0).astype(np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.BILINEAR))


def _overlaps(window: tuple[float, float, float, float], boxes: np.ndarray) -> bool:
    if not len(boxes):
        return False
    x1, y1, x2, y2 = window
    ix = np.clip(np.minimum(x2, boxes[:, 2]) - np.maximum(x1, boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(y2, boxes[:, 3]) - np.maximum(y1, boxes[:, 1]), 0, None)
    return bool((ix * iy > 0).any())


def collect_crops(options: PretrainOptions, split: str, rng: np.random.Generator, progress: bool = True) -> Crops:
    """Every GT box seen in a camera of `split` (at least `min_box_pixels` wide and high), and
    `background_per_image` windows per image that overlap no box."""
    samples = NuScenesSamples(options.dataroot, options.version, split, num_sweeps=0, num_radar_sweeps=0)
    n = len(samples) if options.limit is None else min(options.limit, len(samples))
    images, labels = [], []
    indices = range(n)
    if progress:
        from cache_schema.progress import progress as progress_bar

        indices = progress_bar(indices, desc=f"crops ({split})", unit="sample")
    size = options.crop_size
    for i in indices:
        s = samples[i]
        for c, cam in enumerate(s.cameras):
            targets = project_boxes(s.gt_boxes, s.gt_labels, s.lidar_to_camera(cam.name), s.calib.cam_intrinsics[c],
                                    cam.image_size)
            image = read_rgb(Path(options.dataroot) / s.calib.image_paths[c], (cam.height, cam.width))
            for box, label in zip(targets.boxes, targets.labels):
                x1, y1, x2, y2 = (float(v) for v in box)
                if min(x2 - x1, y2 - y1) < options.min_box_pixels:
                    continue
                images.append(_crop(image, *_square_window(x1, y1, x2, y2, options.context), size))
                labels.append(int(label))
            for _ in range(options.background_per_image):
                for _attempt in range(20):
                    half = float(rng.uniform(8, min(cam.width, cam.height) / 3))
                    cx, cy = float(rng.uniform(half, cam.width - half)), float(rng.uniform(half, cam.height - half))
                    if not _overlaps((cx - half, cy - half, cx + half, cy + half), targets.boxes):
                        images.append(_crop(image, cx, cy, half, size))
                        labels.append(BACKGROUND)
                        break
    if not labels:
        raise UserInputError(f"{options.dataroot}: split {split!r} has no GT box visible in a camera to learn from")
    return Crops(np.stack(images), np.asarray(labels, np.int64))


class CropClassifier(nn.Module):
    """The backbone (`build_resnet`, torchvision's module names) with global pooling and a linear
    classifier as `fc`, as torchvision's ResNet is trained on ImageNet."""

    def __init__(self, depth: int, base_width: int, num_classes: int) -> None:
        super().__init__()
        self.resnet = build_resnet(depth, base_width)
        width = self.resnet.layer4[-1].bn3.num_features if depth >= 50 else self.resnet.layer4[-1].bn2.num_features
        self.resnet.fc = nn.Linear(width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(images))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        return r.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _batch(crops: Crops, picks: np.ndarray, rng: np.random.Generator, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(crops.images[picks]).permute(0, 3, 1, 2).float()
    if train:
        flip = torch.from_numpy(rng.uniform(size=len(picks)) < 0.5)
        x[flip] = x[flip].flip(-1)
        # scale jitter: zoom in or out by up to 15% about the centre (objects vary in size in the student)
        s = x.shape[-1]
        scale = float(rng.uniform(0.85, 1.15))
        zoomed = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        if scale >= 1:
            o = (zoomed.shape[-1] - s) // 2
            x = zoomed[..., o:o + s, o:o + s]
        else:
            pad = s - zoomed.shape[-1]
            x = F.pad(zoomed, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), mode="replicate")
        x = x * torch.from_numpy(rng.uniform(0.8, 1.2, (len(picks), 1, 1, 1))).float()  # brightness
    return (x - IMAGE_MEAN) / IMAGE_STD, torch.from_numpy(crops.labels[picks])


@torch.no_grad()
def accuracy(model: CropClassifier, crops: Crops, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    rng = np.random.default_rng(0)
    for start in range(0, len(crops), batch_size):
        picks = np.arange(start, min(start + batch_size, len(crops)))
        x, y = _batch(crops, picks, rng, train=False)
        correct += int((model(x).argmax(1) == y).sum())
    model.train()
    return correct / max(len(crops), 1)


@dataclass
class PretrainResult:
    out: str
    train_crops: int
    val_crops: int
    class_counts: list[int]
    steps: int
    seconds: float
    train_accuracy: float
    val_accuracy: float | None
    final_loss: float
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        val = f", held-out top-1 {self.val_accuracy:.3f}" if self.val_accuracy is not None else ""
        return (f"{self.out}: backbone pretrained on {self.train_crops} crops ({self.val_crops} held out), "
                f"{self.steps} steps in {self.seconds:.0f} s, train top-1 {self.train_accuracy:.3f}{val}")


def pretrain_backbone(options: PretrainOptions, progress: bool = True) -> PretrainResult:
    """Collect the crops, train the classifier, write the backbone's state dict to `options.out`."""
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    started = time.perf_counter()
    train = collect_crops(options, options.split, rng, progress)
    val = collect_crops(options, options.val_split, rng, progress) if options.val_split else None
    model = CropClassifier(options.depth, options.base_width, BACKGROUND + 1).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    warmup = max(1, options.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(k / options.steps, 1.0))))
    bar = None
    if progress:
        from cache_schema.progress import progress as progress_bar

        bar = progress_bar(total=options.steps, desc="pretrain", unit="step")
    loss = torch.zeros(())
    for _ in range(options.steps):
        picks = rng.integers(0, len(train), min(options.batch_size, len(train)))
        x, y = _batch(train, picks, rng, train=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if bar is not None:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    result = PretrainResult(options.out, len(train), len(val) if val is not None else 0,
                            np.bincount(train.labels, minlength=BACKGROUND + 1).tolist(), options.steps,
                            time.perf_counter() - started, accuracy(model, train),
                            accuracy(model, val) if val is not None else None, float(loss.item()), asdict(options))
    # float16 on disk: half the bytes of a committed file; loading casts back to the model's float32
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.resnet.state_dict().items()}
    save_atomic({"state_dict": state, "pretraining": asdict(result)}, options.out)
    return result
