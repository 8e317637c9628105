"""x3kd detection: the torch parts both stages run, below them (the LiDAR teacher and teacher fitting on the
export side, the students on the training side).

CenterHead (`center_head`), the CenterPoint coder that owns the 10-channel regression layout and its NMS
(`centerpoint_coder`, `nms`), voxelization and the PointPillars encoder (`voxelize`, `pillar_encoder`),
CenterPoint targets and loss (`det_targets`, `det_loss`), BEV augmentation (`bev_aug`), the ResNet
builder (`resnet`), weight files read as data (`weights`), the `--device` check (`device`), instance-mask
pasting (`masks`) and the pictures (`pictures`).
"""
