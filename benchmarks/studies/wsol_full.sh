#!/usr/bin/env bash
# CAM vs DA-WSOL on ShapesWorld `full`: 3 seeds, same backbone and budget, last checkpoint on test.
# About 8-10 CPU-minutes per run on one thread; two runs go in parallel on a 2-core machine.
# Writes benchmarks/results/wsol-full.json (wsol-full-pretrained.json for the pretrained config).
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
study=wsol-full${config#synth-full}
"${PYTHON:-.venv/bin/python}" benchmarks/write_result.py --study "$study" \
  --command "bash benchmarks/studies/wsol_full.sh $out $config" \
  --row "DA-WSOL" method "$out/da_wsol-s*" MaxBoxAccV2 PxAP "GT-known Loc" "Top-1 Loc" "Top-1 Cls" \
  --row "CAM" baseline "$out/cam-s*" MaxBoxAccV2 PxAP "GT-known Loc" "Top-1 Loc" "Top-1 Cls"
"${PYTHON:-.venv/bin/python}" -c "from lowlabel.report.results import markdown_table, read_result; \
print(markdown_table(read_result('benchmarks/results/$study.json')))"
"$ll" report "$out" --out "$out/report"
