#!/usr/bin/env bash
# The fall ablation (benchmarks/fall_ablation.py) for a list of VARIANT:SEED runs, one after
# another; each finished run is merged into the committed record (benchmarks/fall_ablation.json).
# Two lanes may share the 2 cores (one thread each: accuracy only, no timing is taken):
#   bash benchmarks/fall_ablation.sh RUNS_DIR "base:0 constant:0 binary:0"
# The binary variant's store (augment.omniglot.resize_filter = nearest) is built by its first run,
# into RUNS_DIR/nearest.h5. Rerunning continues where it stopped (each run resumes its folder).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs="$1" list="$2"
mkdir -p "$runs"
for run in $list; do
  variant="${run%%:*}" seed="${run##*:}"
  python -m benchmarks.fall_ablation train --variant "$variant" --seed "$seed" --runs "$runs" \
    --nearest "$runs/nearest.h5" >> "$runs/train-$variant-$seed.log" 2>&1
  python -m benchmarks.fall_ablation report --runs "$runs"
done
