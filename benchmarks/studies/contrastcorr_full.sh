#!/usr/bin/env bash
# ContrastCorr vs its intra-only ablation vs raw-pixel affinity on ShapesWorld `full` davis/, 3 seeds, the same budget.
# The colour autoencoder is trained once (seed 0). Checkpoints are chosen on 10 davis/ train sequences (never
# trained on: training reads clips/); the tables score all 20 held-out val sequences, with frames as stored (96 x 128,
# a 12 x 16 feature grid: benchmarks/results/contrastcorr-full.json) and resized to a shorter side of 256 (32 x 42,
# closer to the paper's 560-px grid: contrastcorr-full-256.json). Finished steps are skipped
# (DONE files), a killed run resumes from its last checkpoint.
# Usage: bash benchmarks/studies/contrastcorr_full.sh [OUT=runs/contrastcorr-full] [SEEDS="0 1 2"]
set -euo pipefail
out=${1:-runs/contrastcorr-full}
seeds=${2:-0 1 2}
ll=${LOWLABEL:-.venv/bin/lowlabel}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
mkdir -p "$out"
ae="$out/colour-ae"
if [ ! -f "$ae/DONE" ]; then
  "$ll" train contrastcorr_ae --config configs/contrastcorr_ae/synth-full.yaml --seed 0 --run-dir "$ae" \
    --resume auto --no-progress
  touch "$ae/DONE"
fi
run() {  # name seed [overrides...]
  local name=$1 seed=$2; shift 2
  local dir="$out/$name-s$seed"
  if [ ! -f "$dir/DONE" ]; then
    "$ll" train contrastcorr --config configs/contrastcorr/synth-full.yaml --init_from "$ae" --seed "$seed" \
      --run-dir "$dir" --resume auto --no-progress "$@"
    touch "$dir/DONE"
  fi
  if [ ! -f "$dir/heldout/metrics.json" ]; then  # all 20 val sequences
    sed 's/^  eval_sequences: .*/  eval_sequences: 0/' "$dir/config.yaml" > "$dir/config-heldout.yaml"
    "$ll" evaluate contrastcorr --ckpt "$dir" --split val --method-config "$dir/config-heldout.yaml" --out "$dir/heldout"
  fi
  if [ ! -f "$dir/heldout-256/metrics.json" ]; then  # the same, frames resized to a shorter side of 256 for propagation
    sed 's/^  eval_short_side: .*/  eval_short_side: 256/' "$dir/config-heldout.yaml" > "$dir/config-heldout-256.yaml"
    "$ll" evaluate contrastcorr --ckpt "$dir" --split val --method-config "$dir/config-heldout-256.yaml" \
      --out "$dir/heldout-256"
  fi
}
for s in $seeds; do
  run contrastcorr "$s" &
  run intra-only "$s" --contrastcorr.use_inter false &
  wait
done
# the raw-pixel baseline (no training, no seeds): LAB cells at the encoder's stride 8, the same (paper) propagation
[ -f "$out/pixels/stride8-paper/metrics.json" ] || \
  "$py" benchmarks/propagation_baselines.py --root synth:full --strides 8 --out "$out/pixels" > "$out/pixels.md"
"$py" benchmarks/write_result.py --study contrastcorr-full \
  --command "bash benchmarks/studies/contrastcorr_full.sh $out \"$seeds\"" \
  --row "ContrastCorr" method "$out/contrastcorr-s*::heldout/metrics.json" J\&F-Mean J-Mean F-Mean \
  --row "intra-only training (--contrastcorr.use_inter false)" baseline "$out/intra-only-s*::heldout/metrics.json" \
    J\&F-Mean J-Mean F-Mean \
  --row "raw-pixel LAB affinity, no learning (stride 8, same propagation)" baseline "$out/pixels/stride8-paper" \
    J\&F-Mean J-Mean F-Mean method=pixels config=none
[ -f "$out/pixels-256/stride8-paper/metrics.json" ] || "$py" benchmarks/propagation_baselines.py --root synth:full \
  --strides 8 --short-side 256 --out "$out/pixels-256" > "$out/pixels-256.md"
"$py" benchmarks/write_result.py --study contrastcorr-full-256 \
  --command "bash benchmarks/studies/contrastcorr_full.sh $out \"$seeds\"" \
  --row "ContrastCorr" method "$out/contrastcorr-s*::heldout-256/metrics.json" J\&F-Mean J-Mean F-Mean \
  --row "intra-only training (--contrastcorr.use_inter false)" baseline "$out/intra-only-s*::heldout-256/metrics.json" \
    J\&F-Mean J-Mean F-Mean \
  --row "raw-pixel LAB affinity, no learning (stride 8, same propagation)" baseline "$out/pixels-256/stride8-paper" \
    J\&F-Mean J-Mean F-Mean method=pixels config=none
for study in contrastcorr-full contrastcorr-full-256; do
  "$py" -c "from lowlabel.report.results import markdown_table, read_result; \
print(markdown_table(read_result('benchmarks/results/$study.json')))"
done
