#!/usr/bin/env bash
# `make demo`: the main job end to end on a synthetic nuScenes-format dataset made on the spot.
# Every step is a plain CLI call you can run yourself; outputs go under $OUT (default demo_out/).
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-demo_out}
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }

step "1/3 synthetic nuScenes-format dataset (v1.0-mini tables, LiDAR + 6 cameras)"
if [ ! -f "$OUT/data/v1.0-mini/scene.json" ]; then
  rm -rf "$OUT/data"
  "$BIN/x3kd-cache" make-synthetic "$OUT/data" --preset demo
fi

step "2/3 export the teacher cache (resumable: re-running skips done samples)"
# No trained teacher weights ship with the project, so this pipeline check runs randomly initialised
# teachers (--random-init): the cache is complete and valid, but its teacher maps carry no knowledge.
"$BIN/x3kd-cache" export --dataroot "$OUT/data" --version v1.0-mini --split mini_train \
  --out "$OUT/cache_train.zarr" --random-init --num-sweeps 4

step "3/3 validate and inspect the cache"
"$BIN/x3kd-cache" validate --quiet "$OUT/cache_train.zarr"
"$BIN/x3kd-cache" inspect "$OUT/cache_train.zarr"

printf '\ndataset: %s/data\ncache:   %s/cache_train.zarr\n' "$OUT" "$OUT"
