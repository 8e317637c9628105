"""The radar student: pillars over multi-sweep radar points -> BEV encoder -> CenterHead.

    radar points --voxelize (one pillar per BEV cell)--> PillarFeatureNet --scatter--> BEV canvas
                 --bev_encoder--> BEV features --head--> CenterHead maps on the teacher's grid

The pillar encoder is PointPillars' (the same module the LiDAR teacher runs): each point is decorated
with its offset from its pillar's point mean and from the pillar centre; with radar's 7 features
(x, y, z, RCS, compensated Doppler vx/vy, time lag) that is 12 inputs per point. Pillars are as large
as the teacher's output cells, because radar gives a few hundred points per sample, not hundreds of
thousands: finer pillars would be almost all empty. The outputs are `StudentOutputs` like the camera
student's, so det, X-FD, X-AT and X-OD apply unchanged (DS and X-IS need cameras).
"""
from __future__ import annotations

from cache_schema.layout import RADAR_POINT_FEATURES

from ..batch import StudentBatch
from ..config import StudentConfig
from .bev_encoder import BevEncoder
from detection.center_head import CenterHead
from detection.centerpoint_coder import BoxCoderConfig
from detection.pillar_encoder import PillarFeatureNet, PointPillarsScatter
from .base import BevStudent, StudentOutputs
from detection.voxelize import voxelize_batch


class RadarStudent(BevStudent):
    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        grid = cfg.grid
        r = grid.point_cloud_range
        cell_x, cell_y = grid.cell_size
        self.pillar_size = (float(cell_x), float(cell_y), float(r[5] - r[2]))
        self.point_cloud_range = tuple(float(v) for v in r)
        rc = cfg.radar
        self.max_points, self.max_pillars = rc.max_points_per_pillar, rc.max_pillars
        self.pillar_net = PillarFeatureNet(len(RADAR_POINT_FEATURES), rc.pillar_channels, with_distance=False,
                                           voxel_size=self.pillar_size, point_cloud_range=self.point_cloud_range,
                                           legacy=False)
        self.scatter = PointPillarsScatter(self.pillar_net.out_channels, grid.shape)
        be = cfg.bev_encoder
        self.bev_encoder = BevEncoder(self.pillar_net.out_channels, be.stage_channels, be.stage_blocks,
                                      be.stage_strides, be.out_channels, be.neck)
        self.head = CenterHead(be.out_channels, cfg.class_setup.tasks, cfg.head.share_conv_channel, cfg.head.head_conv,
                               {k: tuple(v) for k, v in cfg.head.common_heads.items()})
        self.box_coder = BoxCoderConfig.on_grid(grid, cfg.test)

    def forward(self, batch: StudentBatch) -> StudentOutputs:
        if batch.radar_points is None:
            raise ValueError("the radar student needs batch.radar_points (a cache with a radar group)")
        pillars = voxelize_batch(batch.radar_points, self.pillar_size, self.point_cloud_range, self.max_points,
                                 self.max_pillars)
        b = len(batch.radar_points)
        if len(pillars.voxels):
            feats = self.pillar_net(pillars.voxels, pillars.num_points, pillars.coors)
            canvas = self.scatter(feats, pillars.coors, b)
        else:  # no radar return anywhere in the batch
            ny, nx = self.scatter.ny, self.scatter.nx
            canvas = pillars.voxels.new_zeros((b, self.pillar_net.out_channels, ny, nx))
        bev = self.bev_encoder(canvas)
        return StudentOutputs(None, None, canvas, bev, self.head(bev))


def build_radar_student(cfg: StudentConfig) -> RadarStudent:
    return RadarStudent(cfg)
