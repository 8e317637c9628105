"""Optional LiDAR teacher that runs mmdet3d's own CenterPoint (any CenterPoint config, voxel ones
included) and hands out the same `LidarTeacherOutput`s as the built-in one.

Needs the `mmdet3d` extra (mmengine, mmcv built from source, mmdet, mmdet3d; spconv for voxel configs);
it is imported only when this teacher is built. Tested where the extra is installed (`make test` installs
it from ../shared/wheels): same outputs as the built-in teacher with the same weights, pillar and voxel.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache_schema.errors import UserInputError
from cache_schema.grid import NUSCENES_CLASSES, BevGrid
from cache_schema.layout import REGRESSION_CHANNELS, RegressionEncoding
from detection.centerpoint_coder import Detections
from teacher_export.teachers.centerpoint.teacher import assemble_outputs
from teacher_export.teachers.lidar_protocol import LidarTeacherOutput

PILLAR02_CONFIG = "configs/centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py"


class Mmdet3dCenterPointTeacher:
    """`config`: an mmdet3d config file (default: mmdet3d's shipped pillar02 nuScenes config);
    `checkpoint`: the matching mmdet3d checkpoint (required unless `random_init`)."""

    def __init__(self, checkpoint: str | Path | None = None, config: str | Path | None = None,
                 device: str | torch.device = "cpu", random_init: bool = False):
        try:
            import mmdet3d
            from mmdet3d.registry import MODELS
            from mmdet3d.utils import register_all_modules
            from mmengine.config import Config
            from mmengine.runner import load_checkpoint
        except ImportError:
            raise UserInputError("mmdet3d is not installed; pip install 'x3kd[mmdet3d]' (see README)") from None
        if checkpoint is None and not random_init:
            raise UserInputError("LiDAR teacher mmdet3d-centerpoint: no checkpoint given; pass an mmdet3d "
                                 "checkpoint file, or --random-init")
        register_all_modules()
        cfg_path = Path(config) if config else Path(mmdet3d.__file__).parent / ".mim" / PILLAR02_CONFIG
        if not cfg_path.is_file():
            raise UserInputError(f"mmdet3d config {cfg_path}: no such file")
        cfg = Config.fromfile(str(cfg_path))
        self.model = MODELS.build(cfg.model)
        if checkpoint is not None:
            try:
                load_checkpoint(self.model, str(checkpoint), map_location="cpu", strict=True)
            except (OSError, RuntimeError, KeyError) as e:
                raise UserInputError(f"checkpoint {checkpoint}: {str(e).splitlines()[0]}") from None
        self.device = torch.device(device)
        self.model = self.model.to(self.device).eval()
        head = self.model.pts_bbox_head
        self.class_names = tuple(c for names in head.class_names for c in names)
        vl = cfg.model.data_preprocessor.voxel_layer
        self.name = "mmdet3d-centerpoint"
        self.grid = BevGrid(tuple(vl.point_cloud_range), tuple(vl.voxel_size), int(head.bbox_coder.out_size_factor))
        self.bev_channels = int(sum(cfg.model.pts_neck.out_channels))
        # mmdet3d's CenterHead regresses the gravity-centre z; its sizes are log when norm_bbox
        self.regression_encoding = RegressionEncoding(dims="log" if head.norm_bbox else "metres")
        self.config: dict[str, Any] = {
            "name": self.name, "implementation": f"mmdet3d {mmdet3d.__version__}", "mmdet3d_config": str(cfg_path),
            "model_config": json.loads(json.dumps(cfg.model.to_dict(), default=str)), "random_init": checkpoint is None,
            "heatmap_classes": list(NUSCENES_CLASSES), "regression_channels": list(REGRESSION_CHANNELS),
            "dim_is_log": bool(head.norm_bbox)}

    def __call__(self, points: list[np.ndarray], decode: bool = True) -> list[LidarTeacherOutput]:
        from mmdet3d.structures import Det3DDataSample, LiDARInstance3DBoxes

        if not points:
            return []
        tensors = [torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32)).to(self.device) for p in points]
        samples = []
        for i in range(len(tensors)):
            ds = Det3DDataSample()
            ds.set_metainfo(dict(box_type_3d=LiDARInstance3DBoxes, sample_idx=i))
            samples.append(ds)
        with torch.inference_mode():
            data = self.model.data_preprocessor(dict(inputs=dict(points=tensors), data_samples=samples), training=False)
            metas = [s.metainfo for s in data["data_samples"]]
            neck = self.model.extract_pts_feat(data["inputs"]["voxels"], points=data["inputs"]["points"],
                                               batch_input_metas=metas)
            raw = self.model.pts_bbox_head(neck)
            preds = self.model.pts_bbox_head.predict_by_feat(raw, metas) if decode else []
        if not decode:
            return assemble_outputs(neck[0], [task[0] for task in raw], [Detections.empty()] * len(tensors),
                                    self.class_names)
        dets = []
        for p in preds:
            boxes = p.bboxes_3d.tensor.clone()
            boxes[:, 2] += boxes[:, 5] / 2  # mmdet3d reports the bottom centre; the cache keeps the gravity centre
            dets.append(Detections(boxes, p.scores_3d, p.labels_3d.long()))
        return assemble_outputs(neck[0], [task[0] for task in raw], dets, self.class_names)
