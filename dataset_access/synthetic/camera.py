"""Render a camera image of the synthetic world: textured ground, sky, and shaded boxes drawn far to
near (painter's algorithm; boxes never intersect, so that order is exact)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

NEAR_PLANE = 0.1
SKY_TOP, SKY_HORIZON = np.array([95.0, 140.0, 200.0]), np.array([200.0, 215.0, 230.0])
ASPHALT = np.array([88.0, 88.0, 92.0])
HAZE_DISTANCE = 90.0
LIGHT_DIR = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])  # world frame, towards the sun

# Box corners in unit-cube coordinates (x along length, y along width, z up), and its faces as corner
# indices, counter-clockwise seen from outside, with their outward normals.
_CORNERS = np.array([[sx, sy, sz] for sz in (-0.5, 0.5) for sy in (-0.5, 0.5) for sx in (-0.5, 0.5)])
_FACES = (((0, 2, 6, 4), (-1, 0, 0)), ((1, 5, 7, 3), (1, 0, 0)), ((0, 4, 5, 1), (0, -1, 0)),
          ((2, 3, 7, 6), (0, 1, 0)), ((0, 1, 3, 2), (0, 0, -1)), ((4, 6, 7, 5), (0, 0, 1)))


def _ground_and_sky(size: tuple[int, int], intrinsics: np.ndarray, cam_to_world: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float background: a ground plane with a 4 m tile texture and lane marks near the ego
    path, hazy with distance, under a sky gradient."""
    w, h = size
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(intrinsics).T
    dirs = pix @ cam_to_world[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origin = cam_to_world[:3, 3]
    down = dirs[..., 2] < -1e-4
    with np.errstate(divide="ignore"):
        t = np.where(down, -origin[2] / np.where(down, dirs[..., 2], -1.0), np.inf)
    gx = origin[0] + t * dirs[..., 0]
    gy = origin[1] + t * dirs[..., 1]
    tile = (np.floor(np.where(down, gx, 0.0) / 4.0) + np.floor(np.where(down, gy, 0.0) / 4.0)) % 2
    ground = ASPHALT[None, None, :] * (0.9 + 0.15 * tile[..., None])
    # Thin bright lines on a 3.5 m grid make depth and perspective visible, like lane markings.
    # Only near the camera: far away the lines would be thinner than a pixel and alias into dots.
    lines = (np.abs(((np.where(down, gx, 0.0) + 1.75) % 3.5) - 1.75) < 0.08) & (t < 25.0)
    ground = np.where(lines[..., None], np.array([205.0, 205.0, 195.0]), ground)
    haze = 1.0 - np.exp(-np.where(down, t, np.inf) / HAZE_DISTANCE)
    elevation = np.clip(dirs[..., 2], 0.0, 1.0)[..., None]
    sky = SKY_HORIZON + (SKY_TOP - SKY_HORIZON) * np.sqrt(elevation)
    img = np.where(down[..., None], ground * (1 - haze[..., None]) + SKY_HORIZON * haze[..., None], sky)
    return img + rng.normal(0.0, 3.0, size=img.shape)


def _clip_near(poly: np.ndarray) -> np.ndarray:
    """Clip a polygon (K, 3) in camera coordinates to z >= NEAR_PLANE (Sutherland-Hodgman, one plane)."""
    out = []
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        a_in, b_in = a[2] >= NEAR_PLANE, b[2] >= NEAR_PLANE
        if a_in:
            out.append(a)
        if a_in != b_in:
            f = (NEAR_PLANE - a[2]) / (b[2] - a[2])
            out.append(a + f * (b - a))
    return np.array(out).reshape(-1, 3)


def render_camera(size: tuple[int, int], intrinsics: np.ndarray, cam_to_world: np.ndarray, boxes: np.ndarray,
                  colours: Sequence[tuple[int, int, int]],
                  bands: Sequence[Sequence[tuple[float, float, tuple[int, int, int]]]],
                  rng: np.random.Generator) -> Image.Image:
    """RGB image of `size` (width, height) seen by a camera with `intrinsics` at `cam_to_world`, showing
    world `boxes` (B, 7) in their `colours`, each with its horizontal colour `bands` on the side faces."""
    img = Image.fromarray(np.clip(_ground_and_sky(size, intrinsics, cam_to_world, rng), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    world_to_cam = np.linalg.inv(cam_to_world)
    cam_origin = cam_to_world[:3, 3]
    order = np.argsort(-np.linalg.norm(boxes[:, :3] - cam_origin, axis=1)) if len(boxes) else []
    for b in order:
        x, y, z, l, w, h, yaw = boxes[b]
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        corners = (_CORNERS * (l, w, h)) @ rot.T + (x, y, z)
        cam_corners = corners @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        if np.all(cam_corners[:, 2] < NEAR_PLANE):
            continue
        base = np.asarray(colours[b], dtype=np.float64)
        for idx, normal in _FACES:
            n_world = rot @ np.asarray(normal, dtype=np.float64)
            face = corners[list(idx)]
            if np.dot(n_world, face.mean(axis=0) - cam_origin) >= 0:  # faces away from the camera
                continue
            shade = 0.45 + 0.55 * max(0.0, float(np.dot(n_world, LIGHT_DIR)))
            polys = [(face, base)]
            if normal[2] == 0:  # side face: corner i + 4 is the top of bottom corner i
                bottom = [i for i in idx if i < 4]
                lo, hi = corners[bottom], corners[[i + 4 for i in bottom]]
                for z0, z1, band_colour in bands[b]:
                    quad = np.concatenate([lo + (hi - lo) * z0, (lo + (hi - lo) * z1)[::-1]])
                    polys.append((quad, np.asarray(band_colour, dtype=np.float64)))
            for poly, colour in polys:
                clipped = _clip_near(poly @ world_to_cam[:3, :3].T + world_to_cam[:3, 3])
                if len(clipped) < 3:
                    continue
                uvw = clipped @ intrinsics.T
                uv = uvw[:, :2] / uvw[:, 2:3]
                fill = tuple(int(v) for v in np.clip(colour * shade, 0, 255))
                draw.polygon([(float(p[0]), float(p[1])) for p in uv], fill=fill)
    return img
