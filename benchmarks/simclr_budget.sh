#!/usr/bin/env bash
# The SimCLR pre-training budget study (README "Mini-ImageNet"; benchmarks/simclr_budget.json):
# one `python -m benchmarks.simclr_budget` run per configuration, constant learning rate
# after a one-epoch warm-up (so a snapshot at minute t is a run stopped at t), LR(SimCLR) on the
# fixed 1000 test episodes (5-way 1- and 5-shot) at 0 (random encoder), 2, 5, 10 (and 15) minutes.
#   bash benchmarks/simclr_budget.sh OUT_DIR [RUN ...]       # default: every run below
# Needs the Mini-ImageNet images and episodes (dvc repro episodes@mini_imagenet).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:?usage: bash benchmarks/simclr_budget.sh OUT_DIR [RUN ...]}"
shift
mkdir -p "$out"
p=pretrain.mini_imagenet
constant="--set $p.lr_schedule=constant --set $p.epochs=1000 --set $p.warmup_epochs=1"
base="$constant --minutes 2 5 10 15"
short="$constant --minutes 2 5 10"
px42="--set $p.image_size=42 --set $p.blocks=4"
px32="--set $p.image_size=32 --set $p.blocks=4"
declare -A RUNS=(
  [px84_600pc_b256]="$base --set $p.train_per_class=600 --set $p.batch=256"
  [px42_600pc_b256]="$base $px42 --set $p.train_per_class=600 --set $p.batch=256"
  [px32_600pc_b256]="$short $px32 --set $p.train_per_class=600 --set $p.batch=256"
  [px32_600pc_b256_lr3e-3]="$short $px32 --set $p.train_per_class=600 --set $p.batch=256 --set $p.lr=0.003"
  [px32_600pc_b256_crop0.2]="$short $px32 --set $p.train_per_class=600 --set $p.batch=256 --set $p.crop_scale=[0.2,1.0]"
  [px32_600pc_b256_t0.2]="$short $px32 --set $p.train_per_class=600 --set $p.batch=256 --set $p.temperature=0.2"
  [px32_600pc_b512]="$short $px32 --set $p.train_per_class=600 --set $p.batch=512"
  [px32_600pc_b256_fp32]="$constant --minutes 2 5 $px32 --set $p.train_per_class=600 --set $p.batch=256 --set $p.precision=fp32"
)
ORDER=(
  px42_600pc_b256 px32_600pc_b256 px32_600pc_b256_lr3e-3 px32_600pc_b256_crop0.2 px32_600pc_b256_t0.2 px32_600pc_b512
  px32_600pc_b256_fp32 px84_600pc_b256
)
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=("${ORDER[@]}")
for run in "${runs[@]}"; do
  [ -f "$out/$run.json" ] && { echo "$run: done"; continue; }
  echo "== $run: ${RUNS[$run]}"
  # shellcheck disable=SC2086
  python -m benchmarks.simclr_budget --images data/mini_imagenet/raw/images.h5 \
    --episodes data/mini_imagenet/episodes.h5 ${RUNS[$run]} --out "$out/$run" > "$out/$run.log" 2>&1
  tail -n 6 "$out/$run.log"
done
