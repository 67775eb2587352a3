#!/usr/bin/env bash
# The Omniglot accuracy-per-training-minute study (README "Accuracy against wall time";
# benchmarks/accuracy_study.json). Each run is one `python -m benchmarks.timecurve` training with
# its learning rate annealed by one half-cosine to its last step, sized to about the minutes
# named (steps = minutes / measured seconds per step on the 2-core CPU), scored on the fixed
# validation episodes (for choosing) and test episodes (for reporting) at the marks.
#   bash benchmarks/accuracy_study.sh OUT_DIR [RUN ...]      # default: every run below
# Needs the Lanczos store (dvc repro episodes@omniglot) and a nearest-neighbour one:
#   the augment stage with augment.omniglot.resize_filter=nearest, in $NEAREST (OUT_DIR/nearest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:?usage: bash benchmarks/accuracy_study.sh OUT_DIR [RUN ...]}"
shift
nearest="${NEAREST:-$out/nearest}"
mkdir -p "$out"
if [ ! -f "$nearest/omniglot.h5" ]; then
  python - "$nearest" <<'PY'
import sys
from pathlib import Path
from metagmvae.runtime.config import load_params
from metagmvae.pipeline import augment
from metagmvae.cli.validate import parse_section
params = load_params("params.yaml")
params["augment"]["omniglot"]["resize_filter"] = "nearest"
out = Path(sys.argv[1])
augment.run(parse_section(params, "augment", "omniglot"), Path("data/omniglot/raw"), out / "omniglot.h5", out / "split.json")
PY
  cp data/omniglot/episodes.h5 "$nearest/episodes.h5"  # episodes depend on the split shapes only
fi

m5=metatrain.omniglot_5way
m20=metatrain.omniglot_20way
cos() { echo "--set $1.lr_schedule=cosine --set $1.steps=$2"; }
declare -A RUNS=(
  # 5-way screening, about 12 minutes each (steps sized from the measured step times)
  [5w_s2_lanczos]="--model omniglot_5way $(cos $m5 12800) --minutes 4 8"
  [5w_s32r2_lanczos]="--model omniglot_5way $(cos $m5 12100) --set $m5.samples=32 --minutes 4 8"
  [5w_s32r2_nearest]="--model omniglot_5way $(cos $m5 12100) --set $m5.samples=32 --minutes 4 8 --store $nearest/omniglot.h5 --episodes $nearest/episodes.h5"
  [5w_s32r1_lanczos]="--model omniglot_5way $(cos $m5 15300) --set $m5.samples=32 --set $m5.samples_decoder=1 --minutes 4 8"
  [5w_m200s32r1_lanczos]="--model omniglot_5way $(cos $m5 9200) --set $m5.points=200 --set $m5.samples=32 --set $m5.samples_decoder=1 --minutes 4 8"
  [5w_b2s32r1_lanczos]="--model omniglot_5way $(cos $m5 8900) --set $m5.batch=2 --set $m5.samples=32 --set $m5.samples_decoder=1 --minutes 4 8"
  [5w_s64r1_lanczos]="--model omniglot_5way $(cos $m5 14800) --set $m5.samples=64 --set $m5.samples_decoder=1 --minutes 4 8"
  [5w_m200s32r4_lanczos]="--model omniglot_5way $(cos $m5 5200) --set $m5.points=200 --set $m5.samples=32 --set $m5.samples_decoder=4 --minutes 4 8"
  # 20-way screening, about 12 minutes each
  [20w_s2_lanczos]="--model omniglot_20way $(cos $m20 12800) --minutes 4 8"
  [20w_s32r1_lanczos]="--model omniglot_20way $(cos $m20 15000) --set $m20.samples=32 --set $m20.samples_decoder=1 --minutes 4 8"
  [20w_m200s32r1_lanczos]="--model omniglot_20way $(cos $m20 8000) --set $m20.points=200 --set $m20.samples=32 --set $m20.samples_decoder=1 --minutes 4 8"
)
ORDER=(
  5w_s32r2_lanczos 5w_s32r2_nearest 5w_s32r1_lanczos 5w_m200s32r1_lanczos 5w_b2s32r1_lanczos 5w_s2_lanczos
  5w_s64r1_lanczos 5w_m200s32r4_lanczos 20w_s32r1_lanczos 20w_m200s32r1_lanczos 20w_s2_lanczos
)
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=("${ORDER[@]}")
for run in "${runs[@]}"; do
  [ -f "$out/$run.json" ] && { echo "$run: done"; continue; }
  echo "== $run: ${RUNS[$run]}"
  # shellcheck disable=SC2086
  python -m benchmarks.timecurve --profile quick --store data/omniglot/omniglot.h5 --episodes data/omniglot/episodes.h5 \
    ${RUNS[$run]} --out "$out/$run" > "$out/$run.log" 2>&1  # a run's own --store comes last and wins
  tail -n 4 "$out/$run.log"
done
