#!/usr/bin/env bash
# CAM vs DA-WSOL on ShapesWorld `full`: 3 seeds, same backbone and budget, last checkpoint on test.
# About 8-10 CPU-minutes per run on one thread; two runs go in parallel on a 2-core machine.
# Usage: bash benchmarks/studies/wsol_full.sh [OUT=runs/wsol-full] [CONFIG=synth-full]
#   CONFIG=synth-full-pretrained: the pretrained regime (needs the synth:pretrain backbone; the first run says how)
set -euo pipefail
out=${1:-runs/wsol-full}
config=${2:-synth-full}
ll=${LOWLABEL:-.venv/bin/lowlabel}
export OMP_NUM_THREADS=1
run() {  # method seed
  local dir="$out/$1-s$2"
  [ -f "$dir/DONE" ] && return 0
  "$ll" train "$1" --config "configs/$1/$config.yaml" --seed "$2" --run-dir "$dir" --resume auto --no-progress
  "$ll" evaluate "$1" --ckpt "$dir/checkpoints/last.ckpt" --split test
  touch "$dir/DONE"
}
for s in 0 1 2; do
  run cam "$s" & run da_wsol "$s" & wait
done
"$ll" report "$out" --out "$out/report"
