#!/usr/bin/env bash
# Cross-domain detection on ShapesWorld `full` domains/: one source-only detector (trained on clear trainA, seed 0,
# frozen), then 3 seeds each of LGCL, CUT (the baseline, = LGCL without G_A) and LGCL without L_GA (the paper's
# ablation), same data, budget and evaluation. Every translator is scored on the 500 foggy testB images: the frozen
# detector's mAP@0.5 on the translations, and PSNR / SSIM against the fog-free twins (testB_clean). The detector alone
# gives the source-only (raw testB) and oracle (testB_clean) rows. Writes benchmarks/results/lgcl-full.json.
# About 20 (CUT), 30 (no L_GA) and 40 (LGCL) CPU-minutes per translator run; two runs at a time on 2 cores.
# Finished steps are skipped (DONE files); a killed run resumes from its last checkpoint.
# Usage: [JOBS=2] bash benchmarks/studies/lgcl_full.sh [OUT=runs/lgcl-full] [SEEDS="0 1 2"]
# Runs of the first LGCL layer-weight mapping (0.1 ... 1.0, weight 1 on G_A's logits), kept as OUT/lgcl-first-s*,
# are reported as a row of their own when present (benchmarks/README, "LGCL: what L_GA does to the attention").
set -euo pipefail
out=${1:-runs/lgcl-full}
seeds=${2:-0 1 2}
ll=${LOWLABEL:-.venv/bin/lowlabel}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
mkdir -p "$out"
det="$out/detector"
if [ ! -f "$det/DONE" ]; then
  "$ll" train detector --config configs/detector/synth-full.yaml --seed 0 --run-dir "$det" --resume auto --no-progress
  touch "$det/DONE"
fi
for split in testB testB_clean testA; do  # source-only (raw target), oracle (clean twins), the source test set
  [ -f "$det/$split/metrics.json" ] || "$ll" evaluate detector --ckpt "$det" --split "$split" --out "$det/$split"
done
run() {  # name method seed [overrides...]
  local name=$1 method=$2 seed=$3; shift 3
  local dir="$out/$name-s$seed"
  [ -f "$dir/DONE" ] && return 0
  "$ll" train "$method" --config "configs/$method/synth-full.yaml" --detector "$det" --seed "$seed" --run-dir "$dir" \
    --resume auto --no-progress "$@"
  touch "$dir/DONE"
}
# Two workers take the nine runs from one queue in seed order (longest first within a seed): about 140 minutes of
# wall time on 2 cores, against 150 when each seed waits for its slowest lane.
queue=()
for s in $seeds; do queue+=("lgcl lgcl $s" "lgcl-no-lga lgcl $s --lg.weight 0" "cut cut $s"); done
export -f run; export out det ll
first=()
if compgen -G "$out/lgcl-first-s*" >/dev/null; then
  first=(--row "LGCL, first run: weight 1 on G_A's logits (0.1 / 0.4 / 0.7 / 1.0)" ablation "$out/lgcl-first-s*" \
    mAP PSNR SSIM)
fi
printf '%s\n' "${queue[@]}" | xargs -P "${JOBS:-2}" -L 1 bash -c 'set -euo pipefail; run "$@"' _
"$py" benchmarks/write_result.py --study lgcl-full \
  --command "bash benchmarks/studies/lgcl_full.sh $out \"$seeds\"" \
  --row "LGCL" method "$out/lgcl-s*" mAP PSNR SSIM \
  --row "CUT (= LGCL without G_A)" baseline "$out/cut-s*" mAP PSNR SSIM \
  --row "LGCL without L_GA (--lg.weight 0)" ablation "$out/lgcl-no-lga-s*" mAP PSNR SSIM \
  "${first[@]}" \
  --row "source-only: the detector on raw testB" reference "$det::testB/metrics.json" mAP \
  --row "oracle: the detector on the fog-free twins" reference "$det::testB_clean/metrics.json" mAP
"$py" -c "from lowlabel.report.results import markdown_table, read_result; \
print(markdown_table(read_result('benchmarks/results/lgcl-full.json')))"
"$ll" report "$out" --out "$out/report"
