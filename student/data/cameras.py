"""The six camera images of one sample as student inputs: decode, augment, normalise, and the matrices.

Used by training (inputs read from the cache) and by evaluation (inputs read from the nuScenes tables),
so that both see exactly the same image pipeline and camera geometry.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cache_schema.views import Calib
from dataset_access.images import read_rgb

from ..image_aug import ImageAugConfig, ImageAugParams, augment_image, sample_image_aug

# ImageNet statistics on 0..255 RGB, as the torchvision ResNets were trained.
IMAGE_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
IMAGE_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)




@dataclass
class CameraInputs:
    """Model inputs of one sample: images [N, 3, H, W] (normalised), intrinsics [N, 3, 3] of the
    augmented images, cam2lidar [N, 4, 4], ida [N, 3, 3], and the augmentation drawn per camera."""

    images: torch.Tensor
    intrinsics: torch.Tensor
    cam2lidar: torch.Tensor
    ida: torch.Tensor
    params: list[ImageAugParams]




def read_image(dataroot: str | Path, relative: str) -> torch.Tensor:
    """One JPEG as uint8 [3, H, W] RGB (a channels-last view of the decoded pixels: the resize reads
    them in that layout, and it is the resized image, a quarter of the size, that becomes float)."""
    return torch.from_numpy(read_rgb(Path(dataroot) / relative)).permute(2, 0, 1)


def load_camera_inputs(dataroot: str | Path, calib: Calib, aug: ImageAugConfig, rng: np.random.Generator | None,
                       train: bool, resize_relative: bool = False, params: list[ImageAugParams] | None = None
                       ) -> CameraInputs:
    """Decode, augment (one independent draw per camera when training) and normalise the images of
    `calib`; `train=False` gives the deterministic test-time resize and crop. `resize_relative`: the
    resize limits are factors of the resize that fits the image width to the final width, so one
    config serves datasets with different camera resolutions. `params` reuses another frame's draw per
    camera (BEVDepth augments a camera's key frames alike)."""
    images, idas, drawn = [], [], []
    for i, relative in enumerate(calib.image_paths):
        image = read_image(dataroot, relative)
        if params is not None:
            cam_params = params[i]
        else:
            cam_aug = aug
            if resize_relative:
                base = aug.final_size[1] / image.shape[2]
                cam_aug = replace(aug, resize_lim=(aug.resize_lim[0] * base, aug.resize_lim[1] * base))
            cam_params = sample_image_aug(cam_aug, (image.shape[1], image.shape[2]), rng, train=train)
        out, ida = augment_image(image, cam_params)
        images.append((out - IMAGE_MEAN) / IMAGE_STD)
        idas.append(ida)
        drawn.append(cam_params)
    ida = torch.stack(idas)
    intrinsics = ida @ torch.from_numpy(calib.cam_intrinsics).float()
    cam2lidar = torch.from_numpy(calib.camera_to_lidar()).float()
    return CameraInputs(torch.stack(images), intrinsics, cam2lidar, ida, drawn)


def previous_frame_inputs(dataroot: str | Path, previous: Calib, key: Calib, key_inputs: CameraInputs
                          ) -> dict[str, torch.Tensor]:
    """A two-key-frame student's second frame beside `key`'s inputs: the `previous` key frame's cameras
    mapped into `key`'s LiDAR frame, each augmented with the key frame's draw for that camera (as
    BEVDepth does). Unbatched `prev_images`, `prev_intrinsics`, `prev_cam2lidar` (StudentBatch fields)."""
    p = load_camera_inputs(dataroot, previous.seen_from(key), ImageAugConfig(), None, train=False,
                           params=key_inputs.params)
    return {"prev_images": p.images, "prev_intrinsics": p.intrinsics, "prev_cam2lidar": p.cam2lidar}
