#!/usr/bin/env bash
# RegionCLIP's teacher: the CLIP of configs/clip/synth-full.yaml trained from scratch on ShapesWorld `full` coco/
# captions, 3 training seeds, scored zero-shot on val (image mAP and top-1; GT-box crop accuracy on base and novel
# classes). About 16 CPU-minutes per seed on one thread. Writes benchmarks/results/clip-teacher.json.
# Usage: bash benchmarks/studies/clip_teacher.sh [OUT=runs/clip-teacher] [SEEDS="0 1 2"]
set -euo pipefail
out=${1:-runs/clip-teacher}
seeds=${2:-0 1 2}
ll=${LOWLABEL:-.venv/bin/lowlabel}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
for s in $seeds; do
  dir="$out/clip-s$s"
  [ -f "$dir/DONE" ] && continue
  "$ll" train clip --config configs/clip/synth-full.yaml --seed "$s" --run-dir "$dir" --resume auto --no-progress
  touch "$dir/DONE"
done
"$py" benchmarks/write_result.py --study clip-teacher --command "bash benchmarks/studies/clip_teacher.sh $out \"$seeds\"" \
  --row "CLIP from scratch on coco/ captions (zero-shot, val)" method "$out/clip-s*" image_mAP image_mAP_base \
    image_mAP_novel image_top1 region_acc region_acc_base region_acc_novel region_acc_novel_only
"$py" -c "from lowlabel.report.results import markdown_table, read_result; \
print(markdown_table(read_result('benchmarks/results/clip-teacher.json')))"
