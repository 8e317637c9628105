"""Cached teacher maps under BEV augmentation: warp(T(points)) against T(aug(points)).

    python -m bench.cache_equivariance --export-yaml teachers/lab/export.yaml \
        --lidar-checkpoint teachers/lab/lidar.pth --dataroot lab/data --version v1.0-trainval --split val [--samples 20]

An online distiller runs the LiDAR teacher on the augmented point cloud; we warp the maps the teacher
wrote for the un-augmented cloud (`detection.centerpoint_coder.augment_teacher_maps`, the student's
own warp, with its validity mask). This measures how far apart the two are, for the LiDAR teacher an
export YAML names (`lidar_teacher`, `lidar_checkpoint`, `num_sweeps`: what `fit-teacher --export-yaml`
writes; a relative checkpoint path is read from the YAML's folder), for each augmentation the
student draws from: x and y flips, rotations of +-22.5 deg, scales 0.95 and 1.05, and the identity
(which must agree exactly: the check that both paths are the same teacher on the same grid).

Per augmentation, over the valid cells of every sample:
- BEV features: cosine similarity per cell over channels, averaged over cells where the online map is
  not empty, and over foreground cells (online teacher heatmap max >= 0.1);
- heatmaps: cosine similarity of the whole maps, and the online teacher's confident peaks (>= 0.3)
  found in the warped map within one cell at >= half their value (peak recall);
- regression: mean |difference| at the online teacher's confident cells (max heatmap >= 0.3), per
  group of channels (centre offset in cells, height m, log size, sin/cos, velocity m/s).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTATIONS = {"identity": {}, "flip x": {"flip_x": True}, "flip y": {"flip_y": True},
                 "rotate +22.5 deg": {"rotate": 22.5}, "rotate -22.5 deg": {"rotate": -22.5},
                 "scale 0.95": {"scale": 0.95}, "scale 1.05": {"scale": 1.05},
                 "rotate 10 deg, scale 1.03, flip y": {"rotate": 10.0, "scale": 1.03, "flip_y": True}}
REG_GROUPS = {"offset (cells)": slice(0, 2), "height (m)": slice(2, 3), "log size": slice(3, 6),
              "sin/cos": slice(6, 8), "velocity (m/s)": slice(8, 10)}


def build_teacher(export_yaml: Path, checkpoint: Path | None):
    import yaml

    from teacher_export.teachers.registry import build_lidar_teacher

    options = yaml.safe_load(export_yaml.read_text())
    if checkpoint is None:
        if not options.get("lidar_checkpoint"):
            raise SystemExit(f"{export_yaml}: names no lidar_checkpoint; give --lidar-checkpoint")
        checkpoint = export_yaml.parent / options["lidar_checkpoint"]
    extra = {"config": str(export_yaml.parent / options["lidar_config"])} if options.get("lidar_config") else {}
    return build_lidar_teacher(options["lidar_teacher"], checkpoint=str(checkpoint), device="cpu", **extra), \
        int(options.get("num_sweeps", 9))


def maps(teacher, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = teacher([points], decode=False)[0]
    return (torch.from_numpy(np.asarray(out.bev_features, np.float32)),
            torch.from_numpy(np.asarray(out.heatmaps, np.float32)),
            torch.from_numpy(np.asarray(out.regression, np.float32)))


def compare(cached, online, valid: torch.Tensor) -> dict[str, float]:
    (fc, hc, rc), (fo, ho, ro) = cached, online
    v = valid[0] > 0
    out = {}
    norm_o, norm_c = fo.norm(dim=0), fc.norm(dim=0)
    cos = (fo * fc).sum(0) / (norm_o * norm_c).clamp_min(1e-8)
    occupied = v & (norm_o > 1e-6)
    fg = occupied & (ho.amax(0) >= 0.1)
    out["feature cos (occupied cells)"] = float(cos[occupied].mean()) if occupied.any() else float("nan")
    out["feature cos (foreground)"] = float(cos[fg].mean()) if fg.any() else float("nan")
    hcv, hov = hc[:, v], ho[:, v]
    out["heatmap cos"] = float((hcv * hov).sum() / (hcv.norm() * hov.norm()).clamp_min(1e-8))
    peaks = (ho >= 0.3) & (ho == F.max_pool2d(ho[None], 3, 1, 1)[0]) & v[None]
    near = F.max_pool2d(hc[None], 3, 1, 1)[0]
    out["peak recall"] = float((near[peaks] >= 0.5 * ho[peaks]).float().mean()) if peaks.any() else float("nan")
    out["_peaks"] = float(peaks.sum())
    confident = v & (ho.amax(0) >= 0.3)
    for name, sl in REG_GROUPS.items():
        out[f"reg {name}"] = (float((rc[sl][:, confident] - ro[sl][:, confident]).abs().mean())
                              if confident.any() else float("nan"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-yaml", type=Path, required=True,
                        help="Export options naming the LiDAR teacher (fit-teacher --export-yaml writes one).")
    parser.add_argument("--lidar-checkpoint", type=Path, default=None,
                        help="The LiDAR teacher's weights (default: the YAML's lidar_checkpoint).")
    parser.add_argument("--dataroot", type=Path, required=True)
    parser.add_argument("--version", default="v1.0-trainval")
    parser.add_argument("--split", default="val")
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()

    from detection.bev_aug import bev_aug_matrix, teacher_validity
    from detection.centerpoint_coder import augment_teacher_maps
    from dataset_access.nuscenes.samples import NuScenesSamples

    t0 = time.perf_counter()
    teacher, sweeps = build_teacher(args.export_yaml, args.lidar_checkpoint)
    samples = NuScenesSamples(args.dataroot, args.version, args.split, num_sweeps=sweeps)
    grid = teacher.grid
    picks = np.linspace(0, len(samples) - 1, min(args.samples, len(samples))).round().astype(int)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in AUGMENTATIONS}
    with torch.no_grad():
        for i in picks:
            info = samples[int(i)]
            points = samples.load_points(info)
            base = maps(teacher, points)
            for name, kwargs in AUGMENTATIONS.items():
                bda = bev_aug_matrix(**kwargs)
                moved = points.copy()
                moved[:, :3] = (points[:, :3] @ bda[:3, :3].numpy().T + bda[:3, 3].numpy()).astype(np.float32)
                online = maps(teacher, moved)
                cached = augment_teacher_maps(bda, grid, *base)
                rows[name].append(compare(cached, online, teacher_validity(bda, grid)))
    keys = [k for k in rows["identity"][0] if not k.startswith("_")]
    print(f"LiDAR teacher of {args.export_yaml}, {len(picks)} {args.split} samples, grid {grid.shape}; "
          f"{time.perf_counter() - t0:.0f} s\n")
    print("| augmentation | " + " | ".join(keys) + " | peaks |")
    print("| --- | " + " | ".join("---:" for _ in keys) + " | ---: |")
    for name, rs in rows.items():
        print(f"| {name} | " + " | ".join(f"{np.nanmean([r[k] for r in rs]):.3f}" for k in keys)
              + f" | {int(sum(r['_peaks'] for r in rs))} |")


if __name__ == "__main__":
    main()
