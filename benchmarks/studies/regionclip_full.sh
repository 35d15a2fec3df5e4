#!/usr/bin/env bash
# RegionCLIP on ShapesWorld `full` coco/ (v1.6: 20 categories, 5 of them novel, whose boxes are hidden in train):
#   - one class-agnostic RPN trained on the base boxes (configs/detector/coco-rpn-synth-full.yaml, seed 0);
#   - one CLIP teacher (configs/clip/synth-full.yaml, seed 0), or the clip run given as TEACHER;
#   - per seed: region-text pretraining of the student (configs/regionclip/synth-full.yaml), then the OVD transfer from
#     the student and, as the baseline, the same transfer from the teacher (configs/ovd/synth-full.yaml, same budget);
#   - zero-shot on val, every class competing: GT-box RoI-feature accuracy (student and teacher; the teacher also on
#     GT-box crops) and detection from the RPN's proposals.
# Writes benchmarks/results/regionclip-full-regions.json (zero-shot region accuracy) and regionclip-full-ovd.json (AP50
# novel / base / all). About 30 (RPN), 16 (teacher), 21 (regionclip) and 10 (ovd, tower frozen) CPU-minutes per run;
# two runs at a time on 2 cores, about 2 hours in all. Finished steps are skipped (DONE files); a killed run resumes.
# Usage: bash benchmarks/studies/regionclip_full.sh [OUT=runs/regionclip-full] [SEEDS="0 1 2"] [TEACHER=OUT/clip]
#        [PRESET=synth-full]   (PRESET synth-quick runs the same steps on the quick data in a few minutes)
# OVD=0 in the environment runs the region-text half alone (RPN, teacher, students, zero-shot rows) and writes
# regionclip-full-regions.json only; a later run without it adds the transfers.
set -euo pipefail
out=${1:-runs/regionclip-full}
seeds=${2:-0 1 2}
teacher=${3:-$out/clip}
preset=${4:-synth-full}
ll=${LOWLABEL:-.venv/bin/lowlabel}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=1
mkdir -p "$out"
rpn="$out/rpn"
if [ ! -f "$rpn/DONE" ]; then
  "$ll" train detector --config "configs/detector/coco-rpn-$preset.yaml" --seed 0 --run-dir "$rpn" --resume auto \
    --no-progress
  touch "$rpn/DONE"
fi
if [ ! -f "$teacher/DONE" ]; then
  "$ll" train clip --config "configs/clip/$preset.yaml" --seed 0 --run-dir "$teacher" --resume auto --no-progress
  touch "$teacher/DONE"
fi
# The zero-shot evaluations read the ovd config with this study's RPN (evaluate takes no overrides).
"$py" - "$preset" "$rpn" "$out" <<'EOF'
import sys
from pathlib import Path

import yaml

preset, rpn, out = sys.argv[1:]
cfg = yaml.safe_load(Path(f"configs/ovd/{preset}.yaml").read_text())
cfg["proposals"]["source"] = rpn
Path(out, "ovd-zero-shot.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
cfg["eval"]["zero_shot_regions"] = "crop"
Path(out, "ovd-zero-shot-crop.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
EOF
step() {  # name: one training run (its DONE file skips it)
  local dir="$out/$1"; shift
  [ -f "$dir/DONE" ] && return 0
  "$ll" train "$@" --run-dir "$dir" --resume auto --no-progress --proposals.source "$rpn"
  touch "$dir/DONE"
}
ovd=${OVD:-1}
student() {  # seed: region-text pretraining, then the OVD transfer from the student
  step "regionclip-s$1" regionclip --config "configs/regionclip/$preset.yaml" --init_from "$teacher" --seed "$1"
  [ "$ovd" = 0 ] || step "ovd-s$1" ovd --config "configs/ovd/$preset.yaml" --init_from "$out/regionclip-s$1" --seed "$1"
}
baseline() {  # seed: the OVD transfer from the teacher, same budget
  step "ovd-teacher-s$1" ovd --config "configs/ovd/$preset.yaml" --init_from "$teacher" --seed "$1"
}
# Two workers take the jobs from one queue (students first: each is two runs in a row).
queue=()
for s in $seeds; do queue+=("student $s"); done
[ "$ovd" = 0 ] || for s in $seeds; do queue+=("baseline $s"); done
export -f step student baseline; export out rpn teacher preset ll ovd
printf '%s\n' "${queue[@]}" | xargs -P 2 -L 1 bash -c 'set -euo pipefail; "$@"' _
zero_shot() {  # run name mode [config]: into <run>/zero_shot/<name>/
  [ -f "$1/zero_shot/$2/metrics.json" ] || "$ll" evaluate ovd --ckpt "$1" --zero-shot "$3" --split val \
    --out "$1/zero_shot/$2" --method-config "${4:-$out/ovd-zero-shot.yaml}"
}
zero_shot "$teacher" gt gt
zero_shot "$teacher" gt-crop gt "$out/ovd-zero-shot-crop.yaml"
[ "$ovd" = 0 ] || zero_shot "$teacher" proposals proposals
for s in $seeds; do
  zero_shot "$out/regionclip-s$s" gt gt
  [ "$ovd" = 0 ] || zero_shot "$out/regionclip-s$s" proposals proposals
done
results=benchmarks/results
[ "$preset" = synth-full ] || results="$out/results"  # a smoke run never replaces the committed result files
cmd="bash benchmarks/studies/regionclip_full.sh $out \"$seeds\" $teacher $preset"
[ "$ovd" = 1 ] || cmd="OVD=$ovd $cmd"
"$py" benchmarks/write_result.py --study regionclip-full-regions --out "$results" --command "$cmd" \
  --row "RegionCLIP student: RoI features of GT boxes" method "$out/regionclip-s*::zero_shot/gt/metrics.json" \
    region_acc_novel region_acc_base region_acc region_acc_novel_only \
  --row "CLIP teacher: RoI features of GT boxes" baseline "$teacher::zero_shot/gt/metrics.json" \
    region_acc_novel region_acc_base region_acc region_acc_novel_only \
  --row "CLIP teacher: GT-box crops" reference "$teacher::zero_shot/gt-crop/metrics.json" \
    region_acc_novel region_acc_base region_acc region_acc_novel_only
[ "$ovd" = 0 ] || "$py" benchmarks/write_result.py --study regionclip-full-ovd --out "$results" --command "$cmd" \
  --row "OVD from the RegionCLIP student" method "$out/ovd-s*" AP50_novel AP50_base AP50_all \
  --row "OVD from the CLIP teacher (same budget)" baseline "$out/ovd-teacher-s*" AP50_novel AP50_base AP50_all \
  --row "zero-shot from proposals: RegionCLIP student" reference "$out/regionclip-s*::zero_shot/proposals/metrics.json" \
    AP50_novel AP50_base AP50_all \
  --row "zero-shot from proposals: CLIP teacher" reference "$teacher::zero_shot/proposals/metrics.json" \
    AP50_novel AP50_base AP50_all
for study in regionclip-full-regions regionclip-full-ovd; do
  [ -f "$results/$study.json" ] || continue
  "$py" -c "import sys; from lowlabel.report.results import markdown_table, read_result; \
print(markdown_table(read_result(sys.argv[1])))" "$results/$study.json"
done
"$ll" report "$out" --out "$out/report"
