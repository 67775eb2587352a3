#!/usr/bin/env bash
# For a machine with a GPU: every run of the trajectory-parity benchmark and of the fall ablation
# (issue 26) that the committed records still lack, all at once, one process per run sharing the
# GPU; then both records merged with their committed runs, their plots and the study table redrawn.
#   bash scripts/device_studies.sh OUT [STEPS]
# Needs data/omniglot/{raw,omniglot.h5,episodes.h5} (carry them; or $RAW, $STORE, $EPISODES), a
# Python with torch, numpy, h5py, scipy, matplotlib, pyyaml, pydantic and tqdm, and for the parity
# runs the official checkout (db-Lee/Meta-GMVAE @ 7962392, never committed) in $OFFICIAL (default
# .carry/official; carry it): without it only the ablation runs. STEPS (default 6000; the B 4 x M 200 parity run trains
# half of it) shrinks every run, as CI does on the CPU; $PARITY / $ABLATION (CONFIG:SIDE:SEED /
# VARIANT:SEED lists) replace the lists the records give. OUT receives the two records (.json,
# .png), the study page and one log; the runs themselves go to $RUNS (default /tmp/studies).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:?usage: bash scripts/device_studies.sh OUT [STEPS]}" steps="${2:-6000}"
official="${OFFICIAL:-.carry/official}" runs="${RUNS:-/tmp/studies}" py="${PYTHON:-python3}"
store="${STORE:-data/omniglot/omniglot.h5}" episodes="${EPISODES:-data/omniglot/episodes.h5}"
raw="${RAW:-data/omniglot/raw}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 METAGMVAE_TRACKING=off
every=$((steps >= 3000 ? 500 : (steps + 1) / 2))
mkdir -p "$out" "$runs/parity" "$runs/ablation"
cp benchmarks/official_dynamics.json benchmarks/fall_ablation.json "$out"/ 2>/dev/null || true
cp docs/studies/2026-12-07-trajectory-parity.md "$out"/
parity=(-m benchmarks.official_dynamics) ablation=(-m benchmarks.fall_ablation)

if [ -z "${PARITY+set}" ]; then
  PARITY=""
  if [ -d "$official" ]; then
    for item in $("$py" "${parity[@]}" todo --config b1m200s4 --steps "$steps" --out "$out/official_dynamics"); do
      PARITY+=" b1m200s4:$item:$steps"
    done
    for item in $("$py" "${parity[@]}" todo --config b4m200s4 --seeds 0 --steps $((steps / 2)) \
      --out "$out/official_dynamics"); do
      PARITY+=" b4m200s4:$item:$((steps / 2))"
    done
  fi
fi
ABLATION="${ABLATION-$("$py" "${ablation[@]}" todo --steps "$steps" --out "$out/fall_ablation")}"
echo "parity runs:${PARITY:- none}" | tee "$out/studies.log"
echo "ablation runs: ${ABLATION:-none}" | tr '\n' ' ' | tee -a "$out/studies.log"
echo | tee -a "$out/studies.log"

parity_run() {  # CONFIG SIDE SEED STEPS: train in phases of 1000 steps, its snapshots scored after each
  local config=$1 side=$2 seed=$3 last=$4 at=0
  while ((at < last)); do
    at=$((at + 1000 < last ? at + 1000 : last))
    "$py" "${parity[@]}" train --config "$config" --side "$side" --seed "$seed" --steps "$at" \
      --every "$every" --runs "$runs/parity" --official "$official" --store "$store"
    "$py" "${parity[@]}" score --config "$config" --side "$side" --seed "$seed" --runs "$runs/parity" \
      --official "$official" --store "$store" --episodes "$episodes"
  done
}

pids=()
for item in $PARITY; do
  IFS=: read -r config side seed last <<< "$item"
  parity_run "$config" "$side" "$seed" "$last" > "$runs/$config-$side-$seed.log" 2>&1 &
  pids+=($!)
done
for item in $ABLATION; do
  IFS=: read -r variant seed <<< "$item"
  "$py" "${ablation[@]}" train --variant "$variant" --seed "$seed" --steps "$steps" --every "$every" \
    --runs "$runs/ablation" --nearest "$runs/nearest.h5" --raw "$raw" --lanczos "$store" \
    --episodes "$episodes" > "$runs/$variant-$seed.log" 2>&1 &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
for log in "$runs"/*.log; do { echo "== $log"; tail -n 5 "$log"; } >> "$out/studies.log"; done
if [ -n "$PARITY" ]; then
  "$py" "${parity[@]}" report --runs "$runs/parity" --out "$out/official_dynamics" \
    --study "$out/2026-12-07-trajectory-parity.md" >> "$out/studies.log"
fi
if [ -n "$ABLATION" ]; then
  "$py" "${ablation[@]}" report --runs "$runs/ablation" --out "$out/fall_ablation" \
    --study "$out/2026-12-07-trajectory-parity.md" >> "$out/studies.log"
fi
echo "$failed of ${#pids[@]} runs failed" | tee -a "$out/studies.log"
[ "$failed" -eq 0 ]
