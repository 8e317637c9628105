#!/usr/bin/env bash
# `make demo`: the main job end to end on a synthetic nuScenes-format dataset made on the spot:
# data -> fit the two teachers briefly -> export the cache (teachers run once) -> train the student
# from the cache with every X3KD loss (no teacher in memory) -> evaluate with nuscenes-devkit.
# Every step is a plain CLI call you can run yourself; outputs go under $OUT (default demo_out/).
# Re-running resumes: finished steps are skipped, the export skips done samples.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-demo_out}
STEPS=${STEPS:-300}
DATA="$OUT/data"
mkdir -p "$OUT/teachers"
# one thread: on 2 cores torch oversubscribes (a student step goes from ~0.4 s to ~8 s with the default)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

step() { printf '\n== %s  (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "1/6 synthetic nuScenes-format dataset (v1.0-mini tables, LiDAR + 6 cameras + 5 radars, 10 scenes x 10 samples)"
if [ ! -f "$DATA/v1.0-mini/scene.json" ]; then
  rm -rf "$DATA"
  "$BIN/x3kd-cache" make-synthetic "$DATA" --preset demo
fi

# No trained teacher weights can be downloaded here, so both teachers are fitted briefly on the
# train split (never on the val split the student is scored on).
step "2/6 fit the LiDAR teacher (small CenterPoint pillar02, 128x128 BEV)"
if [ ! -f "$OUT/teachers/lidar.pth" ]; then
  "$BIN/x3kd-cache" fit-teacher lidar --preset demo --dataroot "$DATA" --version v1.0-mini --split mini_train \
    --out "$OUT/teachers/lidar.pth" --export-yaml "$OUT/teachers/export.yaml"
fi

step "3/6 fit the image teacher (Mask R-CNN, ResNet-18 FPN)"
if [ ! -f "$OUT/teachers/image.pth" ]; then
  "$BIN/x3kd-cache" fit-teacher image --preset demo --dataroot "$DATA" --version v1.0-mini --split mini_train \
    --out "$OUT/teachers/image.pth" --export-yaml "$OUT/teachers/export.yaml"
fi

step "4/6 export the teacher cache of the train split (teachers run once), then validate it"
"$BIN/x3kd-cache" export --config "$OUT/teachers/export.yaml" --dataroot "$DATA" --version v1.0-mini \
  --split mini_train --out "$OUT/cache_train.zarr"
"$BIN/x3kd-cache" validate --quiet "$OUT/cache_train.zarr"
"$BIN/x3kd-cache" inspect "$OUT/cache_train.zarr"
# What the teachers cached for one sample: heatmaps, BEV features, depth targets, instance masks.
"$BIN/x3kd-cache" show "$OUT/cache_train.zarr" --sample 0 --dataroot "$DATA" --out "$OUT/pictures/cache"

step "5/6 train the student from the cache with det + DS + X-FD + X-AT + X-OD + X-IS ($STEPS steps)"
"$BIN/x3kd-student" train --cache "$OUT/cache_train.zarr" --dataroot "$DATA" --config configs/tiny_pillar02.yaml \
  --out "$OUT/run" --set model.teacher_bev_channels=48 --set train.steps="$STEPS" --set data.batch_size=2 \
  --set train.image_every=50 \
  $( ls "$OUT"/run/checkpoints/step_*.pt >/dev/null 2>&1 && echo --resume )

step "6/6 evaluate the student on the val split with nuscenes-devkit's DetectionEval"
CHECKPOINT=$(ls -1 "$OUT"/run/checkpoints/step_*.pt | tail -n 1)
"$BIN/x3kd-student" eval --checkpoint "$CHECKPOINT" --dataroot "$DATA" --version v1.0-mini \
  --split mini_val --out "$OUT/eval" --render 4

cat <<DONE

dataset:      $DATA
teachers:     $OUT/teachers/{lidar,image}.pth  (export options: $OUT/teachers/export.yaml)
cache:        $OUT/cache_train.zarr
checkpoints:  $OUT/run/checkpoints (evaluated: $CHECKPOINT)
TensorBoard:  $BIN/tensorboard --logdir $OUT/run
results:      $OUT/eval (results_nusc.json, metrics)
pictures:     $OUT/pictures/cache (what the teachers cached for sample 0), $OUT/eval/render (predictions on
              4 val samples), $OUT/eval/plots (PR and TP-error curves), TensorBoard's IMAGES tab (every 50 steps)
These numbers come from a tiny student trained for minutes on CPU against briefly fitted teachers on
synthetic data: they show the pipeline working end to end, not X3KD's accuracy on nuScenes.
DONE
