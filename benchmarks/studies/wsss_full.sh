#!/usr/bin/env bash
# Multi-label CAM vs SIPE (+ ablations) on ShapesWorld `full`: 3 seeds, seed mIoU on train, then
# DeepLabV3 on each method's pseudo masks, mIoU on val. Roughly 20-25 CPU-minutes per seed-stage run.
# Usage: bash benchmarks/studies/wsss_full.sh [OUT=runs/wsss-full]
set -euo pipefail
out=${1:-runs/wsss-full}
ll=${LOWLABEL:-.venv/bin/lowlabel}
export OMP_NUM_THREADS=1
train() {  # name method seed [overrides...]
  local name=$1 method=$2 seed=$3; shift 3
  local dir="$out/$name-s$seed"
  [ -f "$dir/DONE" ] && return 0
  "$ll" train "$method" --config "configs/$method/synth-full.yaml" --seed "$seed" --run-dir "$dir" \
    --resume auto --no-progress "$@"
  touch "$dir/DONE"
}
for s in 0 1 2; do
  train mlcam mlcam "$s" & train sipe sipe "$s" & wait
  train sipe-nogsc sipe "$s" --sipe.use_gsc false & train sipe-nobgproto sipe "$s" --sipe.use_bg_prototype false & wait
  for m in mlcam sipe; do
    train "seg-$m" seg "$s" --pseudo_dir "$out/$m-s$s/eval/train_aug/pseudo" &
  done
  wait
done
"$ll" report "$out" --out "$out/report"
