"""Codec and read-path benchmark for dense teacher maps.

python -m bench.cache_codecs [--samples 8] [--source standin|teacher] [--shapes 384x128x128,512x180x180]

For each map shape: bytes per sample, encode/decode MB/s (of the float32 map) and relative L2 error of
float32+zstd, float16+zstd and int8(per-channel affine)+zstd, all zstd level 1 as the cache uses; then
the random single-sample read latency of one dense map through `CacheReader` from a sharded store,
against (a) a raw float32 `.npy` memmap and (b) the floor for our format: reading the chunk's bytes
and decoding them (zstd + dequantize) with no zarr in between.

Map source: `standin` (default) is a documented stand-in for a CenterPoint neck output: per channel a
low-pass-filtered Gaussian field plus object-like blobs, passed through ReLU (SECONDFPN ends in ReLU, so
real maps are non-negative with many exact zeros). `teacher` runs the built-in CenterPoint teacher with
the full-size parity fixture's weights on synthetic point clouds.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from numcodecs import Zstd

from cache_schema import BevGrid, CacheReader, CacheWriter, StoreConfig
from cache_schema.quantize import decode, encode, relative_l2
from cache_schema.statistics import feature_sums
from cache_schema.views import CacheSample, Calib, GroundTruth, LidarTeacherMaps, SampleMeta
from cache_schema.store import ZSTD_LEVEL


def standin_map(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    c, h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    lowpass = np.exp(-(fx**2 + fy**2) / (2 * 0.04**2))
    noise = rng.standard_normal((c, h, w)).astype(np.float32)
    field = np.fft.irfft2(np.fft.rfft2(noise) * lowpass, s=(h, w)).astype(np.float32)
    field /= field.std(axis=(1, 2), keepdims=True) + 1e-6
    yy, xx = np.mgrid[0:h, 0:w]
    blobs = np.zeros((h, w), np.float32)
    for _ in range(40):
        cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 3)
        blobs += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    gain = rng.uniform(0.5, 3.0, (c, 1, 1)).astype(np.float32)
    out = np.maximum(field + gain * blobs[None] - 0.5, 0) * rng.uniform(0.2, 2.0, (c, 1, 1))
    return out.astype(np.float32)


def teacher_maps(count: int, shape: tuple[int, int, int]) -> list[np.ndarray]:
    raise SystemExit("--source teacher needs the built-in CenterPoint teacher (teacher_export); "
                     "not available in this build")


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def codec_rows(maps: list[np.ndarray]) -> list[tuple]:
    zstd = Zstd(level=ZSTD_LEVEL)
    rows = []
    mb = maps[0].nbytes / 1e6
    for mode in ("float32", "float16", "int8"):
        sizes, enc_t, dec_t, errs = [], [], [], []
        for m in maps:
            def enc():
                if mode == "float32":
                    return zstd.encode(m), None
                q, affine = encode(m, mode)
                return zstd.encode(q), affine
            t_enc, (blob, affine) = timed(enc)
            dtype = {"float32": np.float32, "float16": np.float16, "int8": np.int8}[mode]

            def dec():
                raw = np.frombuffer(zstd.decode(blob), dtype=dtype).reshape(m.shape)
                return raw.copy() if mode == "float32" else decode(raw, mode, affine)
            t_dec, back = timed(dec)
            sizes.append(len(blob) + (0 if affine is None else affine.nbytes))
            enc_t.append(t_enc)
            dec_t.append(t_dec)
            errs.append(relative_l2(m, back))
        rows.append((mode, np.median(sizes) / 1e6, mb / np.median(enc_t), mb / np.median(dec_t), float(np.median(errs))))
    return rows


def head_maps(rng: np.random.Generator, h: int, w: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in heatmaps (Gaussian peaks on a ~1e-3 background, like sigmoid outputs) and regression maps."""
    yy, xx = np.mgrid[0:h, 0:w]
    heat = np.full((classes, h, w), 1e-3, np.float32)
    for k in range(classes):
        for _ in range(int(rng.integers(0, 8))):
            cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 3)
            heat[k] = np.maximum(heat[k], rng.uniform(0.3, 0.95) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)))
    reg = standin_map(rng, (10, h, w)) - 0.5
    return heat, reg.astype(np.float32)


def read_rows(maps: list[np.ndarray], shard_size: int, workdir: Path, repeats: int) -> list[tuple]:
    """Random whole-sample reads of the lidar_teacher group (BEV features int8, heatmaps and regression
    float16): through CacheReader, against the floor (same chunks' bytes from one file + decode) and a
    float32 .npy memmap of the same three maps."""
    c, h, w = maps[0].shape
    n = len(maps)
    rng = np.random.default_rng(1)
    # a grid whose BEV shape is (h, w): cell 1 m, stride 1
    grid = BevGrid((0.0, 0.0, -5.0, float(w), float(h), 3.0), (1.0, 1.0, 8.0), 1)
    config = StoreConfig(num_samples=n, grid=grid, bev_channels=c, bev_quantization="int8", image_size=(8, 8),
                         depth_stride=1, shard_size=shard_size, max_gt_boxes=1, max_instances=1,
                         groups=("meta", "calib", "gt", "lidar_teacher"))
    heads = [head_maps(rng, h, w, config.num_classes) for _ in maps]
    url = str(workdir / f"store_{c}x{h}x{w}_s{shard_size}")
    t0 = time.perf_counter()
    with CacheWriter(url, config) as writer:
        for i, m in enumerate(maps):
            writer.write_sample(i, CacheSample(
                SampleMeta(f"t{i}", "s", i, f"t{i}"),
                Calib([""] * 6, np.zeros((6, 3, 3)), np.zeros((6, 4, 4)), np.zeros((6, 4, 4)), np.eye(4), np.eye(4)),
                GroundTruth(np.zeros((1, 9)), np.full(1, -1), 0),
                lidar_teacher=LidarTeacherMaps(m, heads[i][0], heads[i][1], *feature_sums(m))))
    write_s = time.perf_counter() - t0
    reader = CacheReader(url, groups=("lidar_teacher",))
    order = np.random.default_rng(0).integers(0, n, repeats)
    reader[0]

    def read_ours():
        for i in order:
            reader[int(i)]

    npy = workdir / "maps.npy"
    np.save(npy, np.stack([np.concatenate([m, hm, rg]) for m, (hm, rg) in zip(maps, heads)]))
    mm = np.load(npy, mmap_mode="r")

    def read_npy():
        for i in order:
            np.array(mm[int(i)])

    zstd = Zstd(level=ZSTD_LEVEL)
    encoded = []
    for m, (hm, rg) in zip(maps, heads):
        q, affine = encode(m, "int8")
        encoded.append((zstd.encode(q), affine, zstd.encode(hm.astype(np.float16)), zstd.encode(rg.astype(np.float16))))
    blob_file = workdir / "blobs.bin"
    with open(blob_file, "wb") as f:
        spans = []
        for feats, _, hm, rg in encoded:
            spans.append([])
            for blob in (feats, hm, rg):
                spans[-1].append((f.tell(), len(blob)))
                f.write(blob)

    def read_floor():
        with open(blob_file, "rb") as f:
            for i in order:
                parts = []
                for offset, size in spans[i]:
                    f.seek(offset)
                    parts.append(zstd.decode(f.read(size)))
                decode(np.frombuffer(parts[0], np.int8).reshape(c, h, w), "int8", encoded[i][1])
                np.frombuffer(parts[1], np.float16).astype(np.float32)
                np.frombuffer(parts[2], np.float16).astype(np.float32)

    t_ours, _ = timed(read_ours, repeat=2)
    t_floor, _ = timed(read_floor, repeat=2)
    t_npy, _ = timed(read_npy, repeat=2)
    return [("CacheReader[i], lidar_teacher group", 1e3 * t_ours / repeats),
            ("floor: same chunks' bytes + zstd + dequantize", 1e3 * t_floor / repeats),
            ("ratio CacheReader / floor (target <= 1.5)", t_ours / t_floor),
            ("raw float32 .npy memmap of the same maps", 1e3 * t_npy / repeats),
            ("write, samples/s (whole shards)", n / write_s)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--source", choices=("standin", "teacher"), default="standin")
    parser.add_argument("--shapes", default="384x128x128,512x180x180")
    parser.add_argument("--shard-sizes", default="8,16")
    parser.add_argument("--reads", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    workdir = Path(tempfile.mkdtemp(prefix="x3kd-bench-"))
    try:
        for shape_text in args.shapes.split(","):
            shape = tuple(int(v) for v in shape_text.split("x"))
            maps = ([standin_map(rng, shape) for _ in range(args.samples)] if args.source == "standin"
                    else teacher_maps(args.samples, shape))
            print(f"\n### {shape_text} ({maps[0].nbytes / 1e6:.1f} MB float32, source={args.source}, "
                  f"{args.samples} samples, zstd level {ZSTD_LEVEL})\n")
            print("| stored as | MB/sample | encode MB/s | decode MB/s | rel. L2 error |")
            print("| --- | ---: | ---: | ---: | ---: |")
            for mode, size, enc, dec, err in codec_rows(maps):
                print(f"| {mode}+zstd | {size:.2f} | {enc:.0f} | {dec:.0f} | {err:.1e} |")
            for shard in (int(s) for s in args.shard_sizes.split(",")):
                rows = read_rows(maps, shard, workdir, args.reads)
                print(f"\nrandom single-sample read, shards of {shard} (ms per sample, best of 2 runs):\n")
                print("| path | value |")
                print("| --- | ---: |")
                for name, value in rows:
                    print(f"| {name} | {value:.2f} |")
            shutil.rmtree(workdir / "maps.npy", ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
