#!/usr/bin/env bash
# Multi-label CAM vs SIPE (+ ablations) on ShapesWorld `full`: seed mIoU on train, then DeepLabV3 on each method's
# pseudo masks, mIoU on val. Two lanes run side by side (one per core): CAM -> DeepLabV3 on CAM's masks, seed after
# seed, then SIPE without GSC; and SIPE -> DeepLabV3 on SIPE's masks, then SIPE without the background prototype.
# The two main runs write the pseudo masks of all 3,000 `train_aug` images for the segmentation stage; the ablations
# score their seeds on `train` only (1,000 images with masks). About 80 minutes per seed on 2 cores. Writes
# benchmarks/results/wsss-full.json (seed stage) and wsss-full-seg.json (DeepLabV3); "-pretrained" for that config.
# Finished runs are skipped (a DONE file), a killed run resumes from its last checkpoint.
# Usage: bash benchmarks/studies/wsss_full.sh [OUT=runs/wsss-full] [SEEDS="0 1 2"] [CONFIG=synth-full]
#   CONFIG=synth-full-pretrained: the pretrained regime (needs the synth:pretrain backbones; the first run says how)
set -euo pipefail
out=${1:-runs/wsss-full}
seeds=${2:-0 1 2}
config=${3:-synth-full}
mkdir -p "$out"
ll=${LOWLABEL:-.venv/bin/lowlabel}
export OMP_NUM_THREADS=1
train() {  # name method seed [overrides...]
  local name=$1 method=$2 seed=$3; shift 3
  local dir="$out/$name-s$seed"
  [ -f "$dir/DONE" ] && return 0
  "$ll" train "$method" --config "configs/$method/$config.yaml" --seed "$seed" --run-dir "$dir" \
    --resume auto --no-progress "$@"
  touch "$dir/DONE"
}
lane() {  # main method, ablation run name, the SIPE switch the ablation turns off
  local method=$1 ablation=$2 switch=$3
  for s in $seeds; do  # the comparison first, over all seeds
    train "$method" "$method" "$s"
    train "seg-$method" seg "$s" --init_from "$out/$method-s$s"   # the seed stage: its eval/train_aug/pseudo
  done
  for s in $seeds; do
    train "$ablation" sipe "$s" "$switch" false --trainer.eval_split train
  done
}
if [[ "$config" == *pretrained* ]]; then  # the synth:pretrain backbones first (once; each a classify run on both cores)
  py=${PYTHON:-.venv/bin/python}
  for arch in resnet_small resnet18; do  # the seed stages' backbone (width 32), DeepLabV3's
    "$py" -c "from lowlabel.models.weights import resolve_pretrained as r; r('synth:pretrain', arch='$arch', width=32)" \
      2>/dev/null && continue  # made and finished
    dir=$("$py" -c "from lowlabel.models.weights import pretrain_cache_dir as d; print(d('full', 0, '$arch', 32))")
    OMP_NUM_THREADS=2 "$ll" train classify --config configs/classify/synth-full.yaml --model.backbone "$arch" \
      --run-dir "$dir" --resume auto --no-progress
  done
fi
lane mlcam sipe-nogsc --sipe.use_gsc > "$out.cam_lane.log" 2>&1 &
a=$!
lane sipe sipe-nobgproto --sipe.use_bg_prototype > "$out.sipe_lane.log" 2>&1 &
b=$!
status=0
wait "$a" || status=$?
wait "$b" || status=$?
"$ll" report "$out" --out "$out/report"
[ "$status" = 0 ] || exit "$status"
py=${PYTHON:-.venv/bin/python}
study=wsss-full${config#synth-full}
note=()  # from scratch, SIPE loses to CAM for the reason diagnosed in benchmarks/README.md (WSSS section)
[ "$config" = synth-full ] && note=("note=its seeds call the object bodies background: a from-scratch backbone lacks the \
pixel affinities that tie an object's marking to its body" "link=../../README.md#wsss-sipe-vs-multi-label-cam-shapesworld-v15-voc-3-seeds")
seg_note=()
[ "$config" = synth-full ] && seg_note=("note=DeepLabV3 inherits its pseudo masks, which are mostly background: a \
from-scratch backbone lacks the pixel affinities that tie an object's marking to its body" "${note[1]}")
# from pretrain/, SIPE's pseudo masks lead CAM's but cover less of each object (benchmarks/sipe_seed_diagnosis.py)
[ "$config" = synth-full-pretrained ] && seg_note=("note=its pseudo masks are the more precise but cover less than \
half of each object, and DeepLabV3 trained on them calls most object pixels background" \
"link=../../README.md#wsss-from-the-pretrain-backbone-3-seeds")
"$py" benchmarks/write_result.py --study "$study" --command "bash benchmarks/studies/wsss_full.sh $out \"$seeds\" $config" \
  --row "SIPE" method "$out/sipe-s*" mIoU pseudo_mIoU CorLoc "${note[@]}" \
  --row "multi-label CAM (background threshold searched on val)" baseline "$out/mlcam-s*" mIoU pseudo_mIoU CorLoc \
  --row "SIPE without GSC (--sipe.use_gsc false)" ablation "$out/sipe-nogsc-s*" mIoU pseudo_mIoU CorLoc \
  --row "SIPE without the background prototype (--sipe.use_bg_prototype false)" ablation "$out/sipe-nobgproto-s*" \
    mIoU pseudo_mIoU CorLoc
"$py" benchmarks/write_result.py --study "$study-seg" \
  --command "bash benchmarks/studies/wsss_full.sh $out \"$seeds\" $config" \
  --row "DeepLabV3 on SIPE's pseudo masks (val mIoU)" method "$out/seg-sipe-s*" mIoU method=sipe "${seg_note[@]}" \
  --row "DeepLabV3 on CAM's pseudo masks (val mIoU)" baseline "$out/seg-mlcam-s*" mIoU method=mlcam
for f in "$study" "$study-seg"; do
  "$py" -c "from lowlabel.report.results import markdown_table, read_result; \
print(markdown_table(read_result('benchmarks/results/$f.json')))"
done
