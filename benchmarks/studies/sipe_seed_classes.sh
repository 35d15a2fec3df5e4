#!/usr/bin/env bash
# SIPE from scratch on ShapesWorld `full`: which classes compete for the inference seeds. Trains SIPE with the
# committed synth-full config for each seed (scored on `train`, the 1,000 voc/ images with masks), then evaluates
# the same checkpoint again with the official make_cam behaviour (--sipe.seed_classes all); writes
# benchmarks/results/sipe-seed-classes.json and prints its table.
# About 30 minutes per seed on one core. Finished steps are skipped; a killed training resumes.
# Usage: bash benchmarks/studies/sipe_seed_classes.sh [OUT=runs/sipe-seed-classes] [SEEDS="0 1 2"]
set -euo pipefail
out=${1:-runs/sipe-seed-classes}
seeds=${2:-0 1 2}
ll=${LOWLABEL:-.venv/bin/lowlabel}
export OMP_NUM_THREADS=1
mkdir -p "$out"
for s in $seeds; do
  dir="$out/sipe-s$s"
  if [ ! -f "$dir/DONE" ]; then
    "$ll" train sipe --config configs/sipe/synth-full.yaml --seed "$s" --run-dir "$dir" --resume auto --no-progress \
      --trainer.eval_split train
    touch "$dir/DONE"
  fi
  if [ ! -f "$dir/seed-classes-all/metrics.json" ]; then
    sed 's/^  seed_classes: labels$/  seed_classes: all/' "$dir/config.yaml" > "$dir/config-seed-classes-all.yaml"
    grep -q "^  seed_classes: all$" "$dir/config-seed-classes-all.yaml"
    "$ll" evaluate sipe --ckpt "$dir" --split train --method-config "$dir/config-seed-classes-all.yaml" \
      --out "$dir/seed-classes-all"
  fi
done
"${PYTHON:-.venv/bin/python}" benchmarks/write_result.py --study sipe-seed-classes \
  --command "bash benchmarks/studies/sipe_seed_classes.sh $out \"$seeds\"" \
  --row "SIPE, seeds from the image's classes (ours, the default)" method "$out/sipe-s*" mIoU pseudo_mIoU CorLoc \
  --row "SIPE, every class competes (official make_cam, --sipe.seed_classes all)" ablation \
    "$out/sipe-s*::seed-classes-all/metrics.json" mIoU pseudo_mIoU CorLoc
"${PYTHON:-.venv/bin/python}" -c "from lowlabel.report.results import markdown_table, read_result; \
print(markdown_table(read_result('benchmarks/results/sipe-seed-classes.json')))"
