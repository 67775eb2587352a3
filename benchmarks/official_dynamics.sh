#!/usr/bin/env bash
# The trajectory-parity benchmark (benchmarks/official_dynamics.py) for one side, in phases: every
# seed's run is extended to the same step before any goes further, so whenever it is stopped the
# runs have equal length; each phase ends with the scoring of the new snapshots and the record.
# Run one call per side at once (one thread each: accuracy only, no timing is taken):
#   bash benchmarks/official_dynamics.sh RUNS_DIR OFFICIAL_CHECKOUT CONFIG SIDE SEEDS PHASES
#   e.g. bash benchmarks/official_dynamics.sh /work/parity ../official b1m200s4 ours "0 1 2" "500 1000 1500"
# Rerunning continues where it stopped (resume states; scored snapshots are skipped).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="$1" official="$2" config="$3" side="$4" seeds="$5" phases="$6"
bench=(python -m benchmarks.official_dynamics)
for steps in $phases; do
  for seed in $seeds; do
    "${bench[@]}" train --side "$side" --seed "$seed" --config "$config" --steps "$steps" \
      --runs "$runs" --official "$official" >> "$runs/train-$config-$side-$seed.log" 2>&1
  done
  "${bench[@]}" score --runs "$runs" --official "$official" --side "$side"
  "${bench[@]}" report --runs "$runs"
done
