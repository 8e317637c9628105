"""Image and BEV augmentation: matrices match what the pixels/maps went through."""
import math

import numpy as np
import pytest
import torch

from detection.bev_aug import augment_boxes, bev_aug_matrix
from student.image_aug import (ImageAugConfig, ImageAugParams, augment_image, image_aug_matrix, sample_image_aug, transform_boxes_2d)
from detection.centerpoint_coder import augment_teacher_maps

from .student_scenes import TINY_GRID, random_scene, render_teacher_maps


@pytest.mark.parametrize("flip,rotate", [(False, 0.0), (True, 0.0), (False, 4.0), (True, -5.0)])
def test_image_aug_matrix_moves_a_marked_pixel_where_the_image_went(flip, rotate):
    h0, w0 = 90, 160
    img = torch.zeros(1, h0, w0)
    u0, v0 = 101, 47
    img[0, v0 - 2:v0 + 3, u0 - 2:u0 + 3] = 1.0  # a 5x5 blob survives the 0.5x resize
    params = ImageAugParams(resize=0.5, crop=(6, 9), flip=flip, rotate=rotate, final_size=(32, 64))
    out, ida = augment_image(img, params)
    assert out.shape == (1, 32, 64)
    expect = ida @ torch.tensor([u0, v0, 1.0])
    # Centre of mass of the blob in the augmented image.
    vv, uu = torch.meshgrid(torch.arange(32.0), torch.arange(64.0), indexing="ij")
    mass = out[0].clamp_min(0)
    got = torch.stack([(uu * mass).sum() / mass.sum(), (vv * mass).sum() / mass.sum()])
    assert torch.allclose(got, expect[:2], atol=0.35), (got, expect)


def test_intrinsics_of_augmented_image_project_points_through_ida():
    k = torch.tensor([[500.0, 0, 320], [0, 500, 180], [0, 0, 1]])
    params = ImageAugParams(resize=0.4, crop=(10, 20), flip=True, rotate=3.0, final_size=(128, 224))
    ida = image_aug_matrix(params, (360, 640))
    pt = torch.tensor([1.0, -0.5, 8.0])
    uv = k @ pt
    uv = uv / uv[2]
    k_aug = ida @ k
    uv_aug = k_aug @ pt
    assert torch.allclose(uv_aug / uv_aug[2], ida @ uv, atol=1e-4)
    # Flip puts the right side on the left: u decreases as the original u increases.
    assert (ida @ torch.tensor([100.0, 50, 1]))[0] > (ida @ torch.tensor([200.0, 50, 1]))[0]


def test_sample_image_aug_eval_is_deterministic_and_fits():
    cfg = ImageAugConfig(final_size=(64, 176), resize_lim=(0.18, 0.22))
    p = sample_image_aug(cfg, (900, 1600), np.random.default_rng(0), train=False)
    assert not p.flip and p.rotate == 0.0 and p.resize == pytest.approx(0.2)
    rh, rw = round(900 * p.resize), round(1600 * p.resize)
    assert 0 <= p.crop[0] <= rw - 176 and 0 <= p.crop[1] <= rh - 64


def test_transform_boxes_2d_flip_and_scale():
    params = ImageAugParams(resize=0.5, crop=(0, 0), flip=True, rotate=0.0, final_size=(50, 100))
    ida = image_aug_matrix(params, (100, 200))
    box = torch.tensor([[20.0, 10.0, 60.0, 30.0]])  # edges in original pixels
    moved = transform_boxes_2d(box, ida, (50, 100))
    # Half size, mirrored in a 100-pixel-wide image: x in [100-30, 100-10].
    assert torch.allclose(moved, torch.tensor([[70.0, 5.0, 90.0, 15.0]]), atol=1e-4)


def test_augment_boxes_rotation_scale_flip():
    box = torch.tensor([[10.0, 0.0, 1.0, 4.0, 2.0, 1.5, 0.0, 3.0, 0.0]])
    r = augment_boxes(box, bev_aug_matrix(rotate=90.0))
    assert torch.allclose(r[0], torch.tensor([0.0, 10.0, 1.0, 4.0, 2.0, 1.5, math.pi / 2, 0.0, 3.0]), atol=1e-5)
    s = augment_boxes(box, bev_aug_matrix(scale=2.0))
    assert torch.allclose(s[0], torch.tensor([20.0, 0.0, 2.0, 8.0, 4.0, 3.0, 0.0, 6.0, 0.0]), atol=1e-5)
    f = augment_boxes(box, bev_aug_matrix(flip_x=True))  # x -> -x: heading +x becomes -x
    assert torch.allclose(f[0, :3], torch.tensor([-10.0, 0.0, 1.0]))
    assert abs(abs(float(f[0, 6])) - math.pi) < 1e-5 and torch.allclose(f[0, 7:], torch.tensor([-3.0, 0.0]))


AUGS = {
    "flip_x": bev_aug_matrix(flip_x=True),
    "flip_y": bev_aug_matrix(flip_y=True),
    "flip_xy": bev_aug_matrix(flip_x=True, flip_y=True),
    "rot90": bev_aug_matrix(rotate=90.0),
    "rot180": bev_aug_matrix(rotate=180.0),
    "rot270": bev_aug_matrix(rotate=270.0),
    "rot90_flip_y": bev_aug_matrix(rotate=90.0, flip_y=True),
}


@pytest.mark.parametrize("name", sorted(AUGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_augmenting_maps_equals_rendering_the_augmented_scene(name, seed):
    bda = AUGS[name]
    boxes, labels = random_scene(seed)
    heat, reg, _ = render_teacher_maps(boxes, labels)
    feats = torch.randn(7, *TINY_GRID.shape, generator=torch.Generator().manual_seed(seed))
    aug_feat, aug_heat, aug_reg = augment_teacher_maps(bda, TINY_GRID, feats, heat, reg)

    heat_ref, reg_ref, mask_ref = render_teacher_maps(augment_boxes(boxes, bda), labels)
    assert torch.allclose(aug_heat, heat_ref, atol=1e-5)
    assert mask_ref.sum() > 0
    assert torch.allclose(aug_reg[:, mask_ref], reg_ref[:, mask_ref], atol=1e-4)
    # A cell-to-cell permutation moves features without changing any value.
    assert torch.allclose(aug_feat.flatten(1).sort(1).values, feats.flatten(1).sort(1).values, atol=1e-4)


def test_feature_warp_matches_array_flips_and_rotations():
    f = torch.randn(3, *TINY_GRID.shape)
    warp = lambda bda: augment_teacher_maps(bda, TINY_GRID, bev_features=f)[0]  # noqa: E731
    # Rows run along +y, columns along +x.
    assert torch.allclose(warp(bev_aug_matrix(flip_x=True)), f.flip(-1), atol=1e-4)
    assert torch.allclose(warp(bev_aug_matrix(flip_y=True)), f.flip(-2), atol=1e-4)
    assert torch.allclose(warp(bev_aug_matrix(rotate=90.0)), torch.rot90(f, -1, dims=(-2, -1)), atol=1e-4)


@pytest.mark.parametrize("rotate,scale,flip", [(30.0, 1.0, False), (-17.0, 1.1, True), (0.0, 0.9, False)])
def test_regression_fix_decodes_to_the_augmented_box_for_any_rotation_and_scale(rotate, scale, flip):
    """At the cell holding the augmented centre, the warped regression decodes to augment_boxes(box)."""
    boxes, labels = random_scene(3, n=2)
    _, reg, _ = render_teacher_maps(boxes, labels)
    bda = bev_aug_matrix(rotate, scale, flip_y=flip)
    _, _, aug_reg = augment_teacher_maps(bda, TINY_GRID, regression=reg)
    r = TINY_GRID.point_cloud_range
    for box in augment_boxes(boxes, bda):
        j, i = int((box[0] - r[0]) // 0.8), int((box[1] - r[1]) // 0.8)
        c = aug_reg[:, i, j]
        decoded = torch.tensor([r[0] + (j + c[0]) * 0.8, r[1] + (i + c[1]) * 0.8, c[2], *c[3:6].exp(),
                                math.atan2(c[6], c[7]), c[8], c[9]])
        assert torch.allclose(decoded, box, atol=1e-4), (decoded, box)


def test_a_decoded_uint8_image_is_augmented_within_one_level_of_its_float_copy():
    # the loader's input: decoded HWC pixels viewed as [3, H, W]; noise is the worst case for rounding
    hwc = torch.randint(0, 256, (90, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    image = hwc.permute(2, 0, 1)
    params = ImageAugParams(resize=0.45, crop=(3, 5), flip=True, rotate=3.0, final_size=(32, 64))
    fast, ida = augment_image(image, params)
    reference, reference_ida = augment_image(image.float(), params)
    assert fast.dtype == torch.float32 and torch.equal(ida, reference_ida)
    difference = (fast - reference).abs()
    assert difference.max() <= 1.0 and 0 < difference.mean() < 0.4
