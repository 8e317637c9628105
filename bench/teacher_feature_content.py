"""How much of the LiDAR teacher's BEV feature a GT box list already says: what X-FD can teach beyond det.

    python -m bench.teacher_feature_content --train lab/cache_train.zarr --val lab/cache_val.zarr

X-FD pulls the student's BEV feature towards the teacher's. Beside the detection loss, which already
gives the student every GT box, that can only help with what the teacher's feature holds beyond the boxes
(in the paper's words, the LiDAR "dark knowledge": object shape and extent as the points show them,
occlusion, the ground). This bench measures it on a cache: for every cell inside a GT box it describes the
cell by what the box list says (class, log size, heading, the cell's place in the box, its range and
bearing from the ego car) and predicts the teacher's feature there from those descriptors, fitted on the
train cache and scored on the val cache by R^2 (the share of the feature's variance over the foreground
cells that the boxes explain, over all channels). Two predictors: ridge regression and a small MLP (a
lower bound on what a function of the boxes can explain). It also prints where the feature's energy
(sum of squares) sits: in box cells or in the background, whose LiDAR texture a camera cannot infer.

R^2 near 1 says the teacher's foreground feature is a function of the GT boxes: X-FD can give the student
nothing that det's targets do not, except the background. Well below 1 leaves room for dark knowledge.

The same question for X-OD, on the val cache: where the GT boxes' CenterPoint Gaussians (det's own
heatmap targets) are, how close is the teacher's class-agnostic heatmap to them (correlation, mean
absolute difference), how much of the teacher's heatmap mass lies outside them, and at each GT centre
which class the teacher calls it (its argmax; the probability it gives the true class and the largest it
gives another): what per-class X-OD teaches beyond det is the teacher's split between classes.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from cache_schema.reader import CacheReader
from detection.det_targets import build_det_targets


def box_descriptors(boxes: np.ndarray, labels: np.ndarray, num_classes: int, xs: np.ndarray, ys: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the cells (rows, cols) whose centre lies inside a box: the indices and the descriptors [n, D]:
    class one-hot, log(l, w, h), cos/sin yaw, the cell's place in its box (along / (l/2), across / (w/2)),
    range / 25 and cos/sin of the bearing from the ego car, box centre z."""
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    owner = np.full(cx.shape, -1)
    along_all, across_all = np.zeros(cx.shape), np.zeros(cx.shape)
    for k, b in enumerate(boxes):
        dx, dy = cx - b[0], cy - b[1]
        along = dx * math.cos(b[6]) + dy * math.sin(b[6])
        across = -dx * math.sin(b[6]) + dy * math.cos(b[6])
        inside = (np.abs(along) <= b[3] / 2) & (np.abs(across) <= b[4] / 2)
        owner[inside] = k
        along_all[inside], across_all[inside] = along[inside] / (b[3] / 2), across[inside] / (b[4] / 2)
    rows, cols = np.nonzero(owner >= 0)
    k = owner[rows, cols]
    b = boxes[k]
    onehot = np.eye(num_classes)[labels[k]]
    rng = np.hypot(cx[rows, cols], cy[rows, cols])
    bearing = np.arctan2(cy[rows, cols], cx[rows, cols])
    desc = np.column_stack([onehot, np.log(np.maximum(b[:, 3:6], 0.05)), np.cos(b[:, 6]), np.sin(b[:, 6]),
                            along_all[rows, cols], across_all[rows, cols], rng / 25.0, np.cos(bearing),
                            np.sin(bearing), b[:, 2]])
    return rows, cols, desc


def collect(url: str, limit: int | None) -> tuple[np.ndarray, np.ndarray, float, float, int, int]:
    """Foreground descriptors and teacher features over a store's samples, and the feature energy of the
    foreground and background cells with their counts."""
    reader = CacheReader(url, groups=["gt", "lidar_teacher"])
    grid, k = reader.config.grid, len(reader.config.classes.classes)
    xs, ys = grid.cell_centres()
    descs, feats = [], []
    fg_energy = bg_energy = 0.0
    fg_cells = bg_cells = 0
    n = len(reader) if limit is None else min(limit, len(reader))
    for i in range(n):
        sample = reader[i]
        boxes, labels = sample.gt.present()
        f = np.asarray(sample.lidar_teacher.bev_features, dtype=np.float32)  # [C, H, W]
        rows, cols, desc = box_descriptors(np.asarray(boxes, np.float64), np.asarray(labels), k, xs, ys)
        mask = np.zeros(f.shape[1:], bool)
        mask[rows, cols] = True
        energy = (f ** 2).sum(0)
        fg_energy += float(energy[mask].sum())
        bg_energy += float(energy[~mask].sum())
        fg_cells += int(mask.sum())
        bg_cells += int((~mask).sum())
        descs.append(desc)
        feats.append(f[:, rows, cols].T)
    return np.concatenate(descs), np.concatenate(feats), fg_energy, bg_energy, fg_cells, bg_cells


def heatmap_agreement(url: str, limit: int | None) -> tuple[dict, list[tuple[str, int, float, float, float]]]:
    """The teacher's heatmaps against the GT Gaussians over a store: overall figures of the class-agnostic
    maps, and per class (name, GT centres, share the teacher's argmax names correctly, its mean probability
    of the true class there, its mean largest probability of another class there)."""
    reader = CacheReader(url, groups=["gt", "lidar_teacher"])
    grid, setup = reader.config.grid, reader.config.classes
    names = list(setup.classes)
    teacher_in, gt_in, mass_in, mass_all = [], [], 0.0, 0.0
    per_class: dict[int, list[tuple[bool, float, float]]] = {k: [] for k in range(len(names))}
    n = len(reader) if limit is None else min(limit, len(reader))
    for i in range(n):
        sample = reader[i]
        boxes, labels = sample.gt.present()
        heat = np.asarray(sample.lidar_teacher.heatmaps, dtype=np.float32)  # [K, H, W] in the store's class order
        gt = np.zeros_like(heat)
        if len(boxes):
            targets = build_det_targets([torch.tensor(np.asarray(boxes), dtype=torch.float32)],
                                        [torch.tensor(np.asarray(labels))], grid, setup)
            for task, t in zip(setup.tasks, targets):
                for j, name in enumerate(task):
                    gt[names.index(name)] = np.maximum(gt[names.index(name)], t.heatmap[0, j].numpy())
        region = gt.max(0) > 0
        teacher_in.append(heat.max(0)[region])
        gt_in.append(gt.max(0)[region])
        mass_in += float(heat[:, region].sum())
        mass_all += float(heat.sum())
        for k, row, col in zip(*np.nonzero(gt == 1.0)):
            probs = heat[:, row, col]
            others = np.delete(probs, k)
            per_class[int(k)].append((int(probs.argmax()) == k, float(probs[k]), float(others.max())))
    t, g = np.concatenate(teacher_in), np.concatenate(gt_in)
    overall = {"corr": float(np.corrcoef(t, g)[0, 1]) if len(t) > 1 else float("nan"),
               "mad": float(np.abs(t - g).mean()) if len(t) else float("nan"),
               "outside": 1 - mass_in / mass_all if mass_all else float("nan")}
    rows = [(names[k], len(v), float(np.mean([a for a, _, _ in v])), float(np.mean([p for _, p, _ in v])),
             float(np.mean([o for _, _, o in v]))) for k, v in per_class.items() if v]
    return overall, rows


def r2(pred: np.ndarray, target: np.ndarray) -> float:
    """Variance explained over all channels: 1 - sum of squared errors / sum of squared deviations."""
    return float(1 - ((pred - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())


def ridge(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, alpha: float = 1e-2) -> np.ndarray:
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a = np.column_stack([(x_train - mean) / std, np.ones(len(x_train))])
    w = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]), a.T @ y_train)
    return np.column_stack([(x_val - mean) / std, np.ones(len(x_val))]) @ w


def mlp(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, steps: int, seed: int = 0) -> np.ndarray:
    torch.manual_seed(seed)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.as_tensor((x_train - mean) / std, dtype=torch.float32)
    yt = torch.as_tensor(y_train, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, yt.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for step in range(steps):
        idx = torch.randint(0, len(xt), (1024,))
        loss = ((net(xt[idx]) - yt[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(torch.as_tensor((x_val - mean) / std, dtype=torch.float32)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="cache the predictors are fitted on")
    parser.add_argument("--val", required=True, help="cache they are scored on")
    parser.add_argument("--samples", type=int, help="at most this many samples of each cache (default: all)")
    parser.add_argument("--mlp-steps", type=int, default=3000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    x_tr, y_tr, *_ = collect(args.train, args.samples)
    x_va, y_va, fg_e, bg_e, fg_n, bg_n = collect(args.val, args.samples)
    if len(x_tr) < 10 or len(x_va) < 2:
        raise SystemExit(f"too few cells inside GT boxes ({len(x_tr)} train, {len(x_va)} val) to fit anything")
    k = x_tr.shape[1] - 12
    print(f"{len(x_tr)} train / {len(x_va)} val cells inside GT boxes; {y_tr.shape[1]} feature channels; "
          f"{time.perf_counter() - t0:.0f} s to read\n")
    print(f"val: {fg_n / (fg_n + bg_n):.1%} of the cells lie inside a GT box and hold {fg_e / (fg_e + bg_e):.1%} of "
          f"the teacher feature's energy (sum of squares); per cell, a box cell holds "
          f"{(fg_e / max(fg_n, 1)) / (bg_e / max(bg_n, 1)):.1f}x the energy of a background cell\n")
    print("| predictor of the teacher's feature in box cells (fitted on train, scored on val) | R² |")
    print("| --- | ---: |")
    rows = [("mean of the train cells (nothing)", np.repeat(y_tr.mean(0, keepdims=True), len(y_va), 0)),
            ("ridge on the class alone", ridge(x_tr[:, :k], y_tr, x_va[:, :k])),
            ("ridge on the box descriptors", ridge(x_tr, y_tr, x_va)),
            ("MLP on the class alone", mlp(x_tr[:, :k], y_tr, x_va[:, :k], args.mlp_steps)),
            ("MLP on the box descriptors", mlp(x_tr, y_tr, x_va, args.mlp_steps))]
    for label, pred in rows:
        print(f"| {label} | {r2(pred, y_va):.3f} |")
    overall, rows = heatmap_agreement(args.val, args.samples)
    print(f"\nX-OD's target on val: inside the GT Gaussians the teacher's class-agnostic heatmap correlates "
          f"{overall['corr']:.3f} with them (mean |difference| {overall['mad']:.3f}); {overall['outside']:.1%} of "
          f"the teacher's heatmap mass lies outside them\n")
    print("| class | GT centres | teacher's argmax right | its p(true class) | its max p(other class) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, count, right, p_true, p_other in rows:
        print(f"| {name} | {count} | {right:.1%} | {p_true:.3f} | {p_other:.3f} |")
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
