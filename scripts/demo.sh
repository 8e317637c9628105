#!/usr/bin/env bash
# `make demo`: X3KD end to end on a small synthetic lab dataset made on the spot:
# data -> the committed lab teachers (checked against their sha256) -> export the train and val caches
# (the teachers run once) -> score the teachers from their caches -> train two students from the
# train cache on the same budget, det + DS (BEVDepth) and all X3KD terms, with no teacher in memory
# -> score both with nuscenes-devkit's DetectionEval -> print teachers and students side by side.
# Every step is a plain CLI call you can run yourself; outputs go under $OUT (default demo_out/).
# Re-running resumes: finished steps are skipped, the export skips done samples, training resumes.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-demo_out}
# 260 steps of two students side by side fit the 10 minutes of `make demo` on 2 cores; the lab's
# 800-step table is in BENCHMARKS.md ("The synthetic lab").
STEPS=${STEPS:-260}
SCENES=${SCENES:-25}
SAMPLES=${SAMPLES:-10}   # key frames per scene (tests/e2e run this script with a few of each)
TEACHERS=teachers/lab
DATA="$OUT/data"
VERSION=v1.0-trainval
# one thread per process: on 2 cores torch oversubscribes (a step gets several times slower)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"

step() { printf '\n== %s  (%s)\n' "$*" "$(date +%H:%M:%S)"; }
# run two commands side by side (one per core) and fail if either fails; their output goes to logs
both() {
  local log1=$1 cmd1=$2 log2=$3 cmd2=$4
  bash -c "$cmd1" >"$log1" 2>&1 & local p1=$!
  bash -c "$cmd2" >"$log2" 2>&1 & local p2=$!
  local rc=0
  wait $p1 || { rc=$?; echo "failed: see $log1" >&2; tail -n 5 "$log1" >&2; }
  wait $p2 || { rc=$?; echo "failed: see $log2" >&2; tail -n 5 "$log2" >&2; }
  return $rc
}

# a command, or `true` where its result ($1/metrics.json) is already there
unless_scored() { if [ -f "$1/metrics.json" ]; then echo true; else echo "$2"; fi; }

step "1/7 synthetic lab dataset (nuScenes tables, LiDAR + 6 cameras + 5 radars; $SCENES scenes x $SAMPLES samples)"
if [ ! -f "$DATA/$VERSION/scene.json" ]; then
  rm -rf "$DATA"
  # a subset of the lab the committed teachers were fitted on: its val scenes are unseen by them
  "$BIN/x3kd-cache" make-synthetic "$DATA" --preset lab --scenes "$SCENES" --samples-per-scene "$SAMPLES"
fi

step "2/7 the lab teachers: LiDAR CenterPoint and image Mask R-CNN fitted by fit-teacher --preset lab"
(cd "$TEACHERS" && sha256sum --check --quiet SHA256SUMS) \
  || { echo "demo: $TEACHERS/*.pth do not match $TEACHERS/SHA256SUMS (see $TEACHERS/README.md to re-fit them)" >&2; exit 2; }
echo "$TEACHERS/lidar.pth, image.pth and the students' pretrained backbone.pth: sha256 match $TEACHERS/SHA256SUMS"

step "3/7 export the train and val caches side by side (each teacher runs once per sample)"
EXPORT="$BIN/x3kd-cache export --config $TEACHERS/export.yaml --dataroot $DATA --version $VERSION \
  --lidar-checkpoint $TEACHERS/lidar.pth --image-checkpoint $TEACHERS/image.pth"
both "$OUT/export_train.log" "$EXPORT --split train --out $OUT/cache_train.zarr" \
     "$OUT/export_val.log" "$EXPORT --split val --out $OUT/cache_val.zarr"
"$BIN/x3kd-cache" validate --quiet "$OUT/cache_train.zarr"
"$BIN/x3kd-cache" inspect "$OUT/cache_train.zarr"
# What the teachers cached for one sample: heatmaps, BEV features, depth targets, instance masks.
"$BIN/x3kd-cache" show "$OUT/cache_train.zarr" --sample 0 --dataroot "$DATA" --out "$OUT/pictures/cache"

step "4/7 the teachers' own scores on val, from what they cached"
both "$OUT/eval_teacher_lidar.log" "$(unless_scored "$OUT/teacher_lidar" "$BIN/x3kd-cache eval-teacher lidar \
       --cache $OUT/cache_val.zarr --dataroot $DATA --version $VERSION --split val --out $OUT/teacher_lidar")" \
     "$OUT/eval_teacher_image.log" "$(unless_scored "$OUT/teacher_image" "$BIN/x3kd-cache eval-teacher image \
       --cache $OUT/cache_val.zarr --out $OUT/teacher_image")"

step "5/7 train two students side by side from the train cache, $STEPS steps each (configs/lab.yaml)"
train_cmd() {  # name, then the loss switches
  local name=$1; shift
  local sets="--set train.steps=$STEPS --set train.checkpoint_every=50 --set train.image_every=50"
  for s in "$@"; do sets="$sets --set $s"; done
  if [ -f "$OUT/$name/checkpoints/step_$(printf %07d "$STEPS").pt" ]; then echo true; return; fi
  # an interrupted run continues from its last checkpoint; one killed before its first starts anew
  local again=--overwrite
  ls "$OUT/$name"/checkpoints/step_*.pt >/dev/null 2>&1 && again=--resume
  echo "$BIN/x3kd-student train --cache $OUT/cache_train.zarr --dataroot $DATA --config configs/lab.yaml \
    --out $OUT/$name --quiet $sets $again"
}
TERMS_DS="loss.ds.enabled=true loss.xfd.enabled=false loss.xat.enabled=false loss.xod.enabled=false loss.xis.enabled=false"
TERMS_ALL="loss.ds.enabled=true loss.xfd.enabled=true loss.xat.enabled=true loss.xod.enabled=true loss.xis.enabled=true"
# shellcheck disable=SC2086
both "$OUT/train_det_ds.log" "$(train_cmd student_det_ds $TERMS_DS)" \
     "$OUT/train_x3kd.log" "$(train_cmd student_x3kd $TERMS_ALL)"
grep -h "^train $STEPS/" "$OUT/train_det_ds.log" "$OUT/train_x3kd.log" || true

step "6/7 score both students on val with nuscenes-devkit's DetectionEval"
FINAL=checkpoints/step_$(printf %07d "$STEPS").pt
both "$OUT/eval_det_ds.log" "$(unless_scored "$OUT/eval_det_ds" "$BIN/x3kd-student eval \
       --checkpoint $OUT/student_det_ds/$FINAL --dataroot $DATA --version $VERSION --split val --out $OUT/eval_det_ds")" \
     "$OUT/eval_x3kd.log" "$(unless_scored "$OUT/eval_x3kd" "$BIN/x3kd-student eval \
       --checkpoint $OUT/student_x3kd/$FINAL --dataroot $DATA --version $VERSION --split val --out $OUT/eval_x3kd \
       --render 4")"

step "7/7 score the lab's two committed students (800 steps, one seed each) on the same val split"
# trained on the full lab's train scenes (this subset's val scenes are the lab's val scenes: unseen by them)
ZOO="$TEACHERS/students"
(cd "$ZOO" && sha256sum --check --quiet SHA256SUMS) \
  || { echo "demo: $ZOO/*.pt do not match $ZOO/SHA256SUMS" >&2; exit 2; }
both "$OUT/eval_lab_det_ds.log" "$(unless_scored "$OUT/eval_lab_det_ds" "$BIN/x3kd-student eval \
       --checkpoint $ZOO/det_ds.pt --dataroot $DATA --version $VERSION --split val --other-dataroot \
       --out $OUT/eval_lab_det_ds")" \
     "$OUT/eval_lab_x3kd.log" "$(unless_scored "$OUT/eval_lab_x3kd" "$BIN/x3kd-student eval \
       --checkpoint $ZOO/x3kd.pt --dataroot $DATA --version $VERSION --split val --other-dataroot \
       --out $OUT/eval_lab_x3kd")"

"$BIN/python" - "$OUT" "$STEPS" "$ZOO" <<'PY'
import json, sys
from pathlib import Path
out, steps = Path(sys.argv[1]), sys.argv[2]
load = lambda p: json.loads((out / p / "metrics.json").read_text())
lidar, image = load("teacher_lidar"), load("teacher_image")
print("\nteachers on val (from their caches):")
print(f"  LiDAR CenterPoint   mAP {lidar['mAP']:.4f}  NDS {lidar['NDS']:.4f}")
print(f"  image Mask R-CNN    box AP50 {image['bbox']['AP50']:.3f}  mask AP50 {image['segm']['AP50']:.3f}")
print(f"\nstudents on val, same data and {steps} steps:")
rows = [("det + DS (BEVDepth)", load("eval_det_ds")), ("all X3KD terms", load("eval_x3kd"))]
print(f"  {'student':<22}{'mAP':>8}{'NDS':>8}   " + " ".join(f"{c[:6]:>6}" for c in rows[0][1]["per_class_AP"]))
for name, m in rows:
    print(f"  {name:<22}{m['mAP']:8.4f}{m['NDS']:8.4f}   " + " ".join(f"{v:6.3f}" for v in m["per_class_AP"].values()))
zoo = json.loads((Path(sys.argv[3]) / "zoo.json").read_text())
print(f"\nthe lab's committed students on the same val split ({zoo['steps']} steps on the full lab's "
      f"{zoo['train_samples']} train samples, seed {zoo['seed']}; {sys.argv[3]}/README.md):")
for key, name in (("det_ds", "det + DS (BEVDepth)"), ("x3kd", zoo["x3kd"]["label"])):
    m = load(f"eval_lab_{key}")
    print(f"  {name:<22}{m['mAP']:8.4f}{m['NDS']:8.4f}   " + " ".join(f"{v:6.3f}" for v in m["per_class_AP"].values()))
d = zoo["x3kd"]["paired_delta_mAP"]
print(f"  behind their difference: {d['seeds']} seeds of each row on the lab's val, paired Δ mAP {d['mean']:+.3f} "
      f"± {d['std']:.3f} (t = {d['t']:.1f}; the A/A floor: ± {zoo['aa_floor_std']:.3f}); "
      "BENCHMARKS.md, 'The synthetic lab'")
PY

cat <<DONE

dataset:      $DATA
teachers:     $TEACHERS/{lidar,image}.pth (scores: $OUT/teacher_lidar, $OUT/teacher_image)
caches:       $OUT/cache_train.zarr, $OUT/cache_val.zarr
students:     $OUT/student_det_ds, $OUT/student_x3kd (checkpoints, logs; TensorBoard: $BIN/tensorboard --logdir $OUT)
results:      $OUT/eval_det_ds, $OUT/eval_x3kd (results_nusc.json, metrics, PR curves); the lab's students:
              $OUT/eval_lab_det_ds, $OUT/eval_lab_x3kd
pictures:     $OUT/pictures/cache (what the teachers cached for sample 0), $OUT/eval_x3kd/render (the X3KD
              student's boxes on 4 val samples), TensorBoard's IMAGES tab (every 50 steps)
Two students of $STEPS steps on a train split of $(( (SCENES - (SCENES + 2) / 5) * SAMPLES )) samples are noisy: one seed decides nothing. The lab's table
(800 steps, 480 samples, 5 seeds of det + DS, X-IS and all terms, paired differences beside the A/A floor)
is in BENCHMARKS.md, "The synthetic lab".
DONE
