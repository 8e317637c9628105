"""Scene helpers for the student tests: a tiny grid and a renderer for teacher-style BEV maps."""
from __future__ import annotations

import torch

from cache_schema.grid import BevGrid, ClassSetup

TINY_GRID = BevGrid((-12.8, -12.8, -5.0, 12.8, 12.8, 3.0), (0.2, 0.2, 8.0), 4)  # 32 x 32, 0.8 m cells


def render_teacher_maps(boxes: torch.Tensor, labels: torch.Tensor, grid: BevGrid = TINY_GRID,
                        window: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-style dense maps of a scene: heatmaps [10, H, W] (CenterPoint Gaussians in class order)
    and regression [10, H, W] written in a (2*window+1)^2 block of cells around each box centre, each
    cell holding the object's centre offset from that cell's corner. Also returns the block mask [H, W]."""
    from detection.det_targets import build_det_targets

    classes = ClassSetup()
    h, w = grid.shape
    cx, cy = grid.cell_size
    r = grid.point_cloud_range
    tt = build_det_targets([boxes], [labels], grid, classes)
    by_name = {}
    for task, t in zip(classes.tasks, tt):
        for i, name in enumerate(task):
            by_name[name] = t.heatmap[0, i]
    heat = torch.stack([by_name[c] for c in classes.classes])
    reg = torch.zeros(10, h, w)
    mask = torch.zeros(h, w, dtype=torch.bool)
    for b in boxes:
        gx, gy = (float(b[0]) - r[0]) / cx, (float(b[1]) - r[1]) / cy
        ix, iy = int(gx // 1), int(gy // 1)
        for i in range(iy - window, iy + window + 1):
            for j in range(ix - window, ix + window + 1):
                if 0 <= i < h and 0 <= j < w:
                    reg[:, i, j] = torch.tensor([gx - j, gy - i, float(b[2]), *b[3:6].log().tolist(),
                                                 float(b[6].sin()), float(b[6].cos()), float(b[7]), float(b[8])])
                    mask[i, j] = True
    return heat, reg, mask


def random_scene(seed: int, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` well-separated boxes in the tiny grid, centres away from cell edges."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-6.0, -5.0], [5.0, 4.0], [-4.0, 6.5], [6.0, -6.0]])[:n]
    centres = centres + 0.8 * (torch.rand(n, 2, generator=g) * 0.6 + 0.2)  # offsets within cells
    z = torch.rand(n, 1, generator=g) * 2 - 1
    dims = torch.rand(n, 3, generator=g) * 3 + 0.5
    yaw = (torch.rand(n, 1, generator=g) * 2 - 1) * 3.1
    vel = torch.randn(n, 2, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return torch.cat([centres, z, dims, yaw, vel], 1), labels
