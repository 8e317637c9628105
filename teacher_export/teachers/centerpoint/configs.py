"""Shipped model configs for the built-in CenterPoint teacher.

`PILLAR02_NUSCENES` is the `model` dict of mmdet3d 1.4's
`configs/centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py`, resolved (base
configs merged) and unchanged; a checkpoint trained with that config loads into
`CenterPoint.from_mmdet3d_config(PILLAR02_NUSCENES)`. `VOXEL01_NUSCENES` and `VOXEL0075_NUSCENES` are
the same for `centerpoint_voxel01_...` and `centerpoint_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py`
(tests hold them equal to the dicts mmdet3d itself builds). Train-time keys (losses, train_cfg) are kept
so the dict stays comparable with mmdet3d's; the builder ignores them.
"""
from __future__ import annotations

import copy
from typing import Any

from cache_schema.errors import UserInputError

PILLAR02_NUSCENES: dict[str, Any] = {'type': 'CenterPoint',
 'data_preprocessor': {'type': 'Det3DDataPreprocessor',
                       'voxel': True,
                       'voxel_layer': {'max_num_points': 20,
                                       'voxel_size': [0.2, 0.2, 8],
                                       'max_voxels': [30000, 40000],
                                       'point_cloud_range': [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]}},
 'pts_voxel_encoder': {'type': 'PillarFeatureNet',
                       'in_channels': 5,
                       'feat_channels': [64],
                       'with_distance': False,
                       'voxel_size': [0.2, 0.2, 8],
                       'norm_cfg': {'type': 'BN1d', 'eps': 0.001, 'momentum': 0.01},
                       'legacy': False,
                       'point_cloud_range': [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]},
 'pts_middle_encoder': {'type': 'PointPillarsScatter', 'in_channels': 64, 'output_shape': [512, 512]},
 'pts_backbone': {'type': 'SECOND',
                  'in_channels': 64,
                  'out_channels': [64, 128, 256],
                  'layer_nums': [3, 5, 5],
                  'layer_strides': [2, 2, 2],
                  'norm_cfg': {'type': 'BN', 'eps': 0.001, 'momentum': 0.01},
                  'conv_cfg': {'type': 'Conv2d', 'bias': False}},
 'pts_neck': {'type': 'SECONDFPN',
              'in_channels': [64, 128, 256],
              'out_channels': [128, 128, 128],
              'upsample_strides': [0.5, 1, 2],
              'norm_cfg': {'type': 'BN', 'eps': 0.001, 'momentum': 0.01},
              'upsample_cfg': {'type': 'deconv', 'bias': False},
              'use_conv_for_no_stride': True},
 'pts_bbox_head': {'type': 'CenterHead',
                   'in_channels': 384,
                   'tasks': [{'num_class': 1, 'class_names': ['car']},
                             {'num_class': 2, 'class_names': ['truck', 'construction_vehicle']},
                             {'num_class': 2, 'class_names': ['bus', 'trailer']},
                             {'num_class': 1, 'class_names': ['barrier']},
                             {'num_class': 2, 'class_names': ['motorcycle', 'bicycle']},
                             {'num_class': 2, 'class_names': ['pedestrian', 'traffic_cone']}],
                   'common_heads': {'reg': [2, 2],
                                    'height': [1, 2],
                                    'dim': [3, 2],
                                    'rot': [2, 2],
                                    'vel': [2, 2]},
                   'share_conv_channel': 64,
                   'bbox_coder': {'type': 'CenterPointBBoxCoder',
                                  'post_center_range': [-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                                  'max_num': 500,
                                  'score_threshold': 0.1,
                                  'out_size_factor': 4,
                                  'voxel_size': [0.2, 0.2],
                                  'code_size': 9,
                                  'pc_range': [-51.2, -51.2]},
                   'separate_head': {'type': 'SeparateHead',
                                     'init_bias': -2.19,
                                     'final_kernel': 3,
                                     'in_channels': 64,
                                     'heads': {'reg': [2, 2],
                                               'height': [1, 2],
                                               'dim': [3, 2],
                                               'rot': [2, 2],
                                               'vel': [2, 2],
                                               'heatmap': [2, 2]},
                                     'num_cls': 2},
                   'loss_cls': {'type': 'mmdet.GaussianFocalLoss', 'reduction': 'mean'},
                   'loss_bbox': {'type': 'mmdet.L1Loss', 'reduction': 'mean', 'loss_weight': 0.25},
                   'norm_bbox': True,
                   'train_cfg': {'grid_size': [512, 512, 1],
                                 'voxel_size': [0.2, 0.2, 8],
                                 'out_size_factor': 4,
                                 'dense_reg': 1,
                                 'gaussian_overlap': 0.1,
                                 'max_objs': 500,
                                 'min_radius': 2,
                                 'code_weights': [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2],
                                 'point_cloud_range': [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]},
                   'test_cfg': {'post_center_limit_range': [-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                                'max_per_img': 500,
                                'max_pool_nms': False,
                                'min_radius': [4, 12, 10, 1, 0.85, 0.175],
                                'score_threshold': 0.1,
                                'pc_range': [-51.2, -51.2],
                                'out_size_factor': 4,
                                'voxel_size': [0.2, 0.2],
                                'nms_type': 'rotate',
                                'pre_max_size': 1000,
                                'post_max_size': 83,
                                'nms_thr': 0.2}},
 'train_cfg': {'pts': {'grid_size': [512, 512, 1],
                       'voxel_size': [0.2, 0.2, 8],
                       'out_size_factor': 4,
                       'dense_reg': 1,
                       'gaussian_overlap': 0.1,
                       'max_objs': 500,
                       'min_radius': 2,
                       'code_weights': [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2],
                       'point_cloud_range': [-51.2, -51.2, -5.0, 51.2, 51.2, 3.0]}},
 'test_cfg': {'pts': {'post_center_limit_range': [-61.2, -61.2, -10.0, 61.2, 61.2, 10.0],
                      'max_per_img': 500,
                      'max_pool_nms': False,
                      'min_radius': [4, 12, 10, 1, 0.85, 0.175],
                      'score_threshold': 0.1,
                      'pc_range': [-51.2, -51.2],
                      'out_size_factor': 4,
                      'voxel_size': [0.2, 0.2],
                      'nms_type': 'rotate',
                      'pre_max_size': 1000,
                      'post_max_size': 83,
                      'nms_thr': 0.2}}}

CONFIGS: dict[str, dict[str, Any]] = {"centerpoint-pillar02": PILLAR02_NUSCENES}


def get_config(name: str) -> dict[str, Any]:
    """A fresh copy of a shipped model config by name."""
    if name not in CONFIGS:
        raise UserInputError(f"unknown CenterPoint config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return copy.deepcopy(CONFIGS[name])


def _small_pillar02() -> dict[str, Any]:
    """pillar02 on the nuScenes range and grid (±51.2 m, 0.2 m pillars, stride 4 → 128×128, the
    student's default BEV grid) with the parity fixture's narrow channels (16/32/32, neck 3×16, head
    16), fewer backbone layers (1/2/2), one conv per head output and 10 points per pillar: the same
    architecture, task groups and checkpoint format, small enough to fit on 2 CPU cores in minutes.
    Used by the demo (`x3kd-cache fit-teacher lidar --config centerpoint-pillar02-small`)."""
    cfg = copy.deepcopy(PILLAR02_NUSCENES)
    cfg["data_preprocessor"]["voxel_layer"]["max_voxels"] = [20000, 20000]
    cfg["pts_voxel_encoder"]["feat_channels"] = [16]
    cfg["pts_middle_encoder"]["in_channels"] = 16
    cfg["pts_backbone"].update(in_channels=16, out_channels=[16, 32, 32])
    cfg["pts_neck"].update(in_channels=[16, 32, 32], out_channels=[16, 16, 16])
    cfg["data_preprocessor"]["voxel_layer"]["max_num_points"] = 10
    cfg["pts_backbone"]["layer_nums"] = [1, 2, 2]
    head = cfg["pts_bbox_head"]
    # One conv per output instead of conv-BN-ReLU + conv: 36 narrow convs at 128x128 dominated a
    # training step on CPU; the backbone carries the capacity.
    head.update(in_channels=48, share_conv_channel=16, num_heatmap_convs=1,
                common_heads={k: [c, 1] for k, (c, _) in head["common_heads"].items()})
    head["separate_head"].update(in_channels=16, head_conv=16)
    head["separate_head"]["heads"] = {k: [c, 1] for k, (c, _) in head["separate_head"]["heads"].items()}
    return cfg


CONFIGS["centerpoint-pillar02-small"] = _small_pillar02()


def _lab_pillar02() -> dict[str, Any]:
    """The synthetic lab's LiDAR teacher: the small pillar02 on the lab's +-25.6 m grid (0.2 m pillars,
    stride 4 -> 64x64 BEV cells of 0.8 m: the grid of configs/lab.yaml, where every lab object lies)
    with twice its backbone width (32/64/64, neck 3 x 32 = 96 channels, head 32) and 20 points per
    pillar: mmdet3d's architecture and checkpoint format, fitted in minutes on 2 CPU cores
    (`x3kd-cache fit-teacher lidar --preset lab`)."""
    cfg = _small_pillar02()
    pc_range = [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0]
    cfg["data_preprocessor"]["voxel_layer"].update(point_cloud_range=pc_range, max_num_points=20)
    cfg["pts_voxel_encoder"]["point_cloud_range"] = pc_range
    cfg["pts_middle_encoder"]["output_shape"] = [256, 256]
    cfg["pts_backbone"].update(out_channels=[32, 64, 64])
    cfg["pts_neck"].update(in_channels=[32, 64, 64], out_channels=[32, 32, 32])
    head = cfg["pts_bbox_head"]
    head.update(in_channels=96, share_conv_channel=32)
    head["separate_head"].update(in_channels=32, head_conv=32)
    limit = [-30.0, -30.0, -10.0, 30.0, 30.0, 10.0]
    head["bbox_coder"].update(pc_range=pc_range[:2], post_center_range=limit)
    for train_cfg in (head["train_cfg"], cfg["train_cfg"]["pts"]):
        train_cfg.update(grid_size=[256, 256, 1], point_cloud_range=pc_range)
    for test_cfg in (head["test_cfg"], cfg["test_cfg"]["pts"]):
        test_cfg.update(pc_range=pc_range[:2], post_center_limit_range=limit)
    return cfg


CONFIGS["centerpoint-pillar02-lab"] = _lab_pillar02()


def _waymo_pillar04_small() -> dict[str, Any]:
    """A Waymo teacher for the synthetic Waymo data: the small pillar02's architecture with 0.4 m
    pillars over +-51.2 m (stride 4 -> 64x64 BEV cells of 1.6 m, the grid of configs/waymo_tiny.yaml)
    and Waymo's classes in three tasks (vehicle; pedestrian, cyclist; sign), heatmaps in that order
    (`x3kd-cache fit-teacher lidar --version waymo-v2 --config centerpoint-pillar04-waymo-small`)."""
    cfg = _small_pillar02()
    voxel = [0.4, 0.4, 8]
    cfg["data_preprocessor"]["voxel_layer"].update(voxel_size=voxel, max_num_points=20)
    cfg["pts_voxel_encoder"]["voxel_size"] = voxel
    cfg["pts_middle_encoder"]["output_shape"] = [256, 256]
    head = cfg["pts_bbox_head"]
    head["tasks"] = [{"num_class": 1, "class_names": ["vehicle"]},
                     {"num_class": 2, "class_names": ["pedestrian", "cyclist"]},
                     {"num_class": 1, "class_names": ["sign"]}]
    head["bbox_coder"]["voxel_size"] = voxel[:2]
    for train_cfg in (head["train_cfg"], cfg["train_cfg"]["pts"]):
        train_cfg.update(grid_size=[256, 256, 1], voxel_size=voxel)
    for test_cfg in (head["test_cfg"], cfg["test_cfg"]["pts"]):
        test_cfg.update(voxel_size=voxel[:2])
    return cfg


CONFIGS["centerpoint-pillar04-waymo-small"] = _waymo_pillar04_small()


def _voxel_nuscenes(voxel_xy: float, half_range: float, sparse_xy: int) -> dict[str, Any]:
    """mmdet3d's CenterPoint voxel configs for nuScenes: the pillar02 config's head, task groups,
    SECONDFPN style and test settings, with HardSimpleVFE + SparseEncoder (z in 0.2 m voxels over
    [-5, 3] m -> 41 sparse layers) instead of pillars, SECOND [128, 256] x [5, 5] with strides [1, 2],
    a 2 x 256-channel neck and an output stride of 8 voxels."""
    cfg = copy.deepcopy(PILLAR02_NUSCENES)
    pc_range = [-half_range, -half_range, -5.0, half_range, half_range, 3.0]
    voxel = [voxel_xy, voxel_xy, 0.2]
    cfg["data_preprocessor"]["voxel_layer"] = {"max_num_points": 10, "voxel_size": voxel,
                                               "max_voxels": [90000, 120000], "point_cloud_range": pc_range}
    cfg["pts_voxel_encoder"] = {"type": "HardSimpleVFE", "num_features": 5}
    cfg["pts_middle_encoder"] = {
        "type": "SparseEncoder", "in_channels": 5, "sparse_shape": [41, sparse_xy, sparse_xy], "output_channels": 128,
        "order": ["conv", "norm", "act"], "encoder_channels": [[16, 16, 32], [32, 32, 64], [64, 64, 128], [128, 128]],
        "encoder_paddings": [[0, 0, 1], [0, 0, 1], [0, 0, [0, 1, 1]], [0, 0]], "block_type": "basicblock"}
    cfg["pts_backbone"].update(in_channels=256, out_channels=[128, 256], layer_nums=[5, 5], layer_strides=[1, 2])
    cfg["pts_neck"].update(in_channels=[128, 256], out_channels=[256, 256], upsample_strides=[1, 2])
    head = cfg["pts_bbox_head"]
    head["in_channels"] = 512
    head["bbox_coder"].update(out_size_factor=8, voxel_size=voxel[:2], pc_range=pc_range[:2])
    for train_cfg in (head["train_cfg"], cfg["train_cfg"]["pts"]):
        train_cfg.update(grid_size=[sparse_xy, sparse_xy, 40], voxel_size=voxel, out_size_factor=8,
                         point_cloud_range=pc_range)
    for test_cfg in (head["test_cfg"], cfg["test_cfg"]["pts"]):
        test_cfg.update(out_size_factor=8, voxel_size=voxel[:2], pc_range=pc_range[:2])
    return cfg


VOXEL01_NUSCENES = _voxel_nuscenes(0.1, 51.2, 1024)      # 128 x 128 BEV cells of 0.8 m, 512-channel neck
VOXEL0075_NUSCENES = _voxel_nuscenes(0.075, 54.0, 1440)  # 180 x 180 BEV cells of 0.6 m, 512-channel neck
CONFIGS["centerpoint-voxel01"] = VOXEL01_NUSCENES
CONFIGS["centerpoint-voxel0075"] = VOXEL0075_NUSCENES
