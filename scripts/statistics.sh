#!/usr/bin/env bash
# The numbers of docs/studies/2026-12-01-paired-comparisons.md (paired differences, seed spread),
# measured on the committed profile. Run after `dvc repro` and a commit of its results (HEAD is
# seed 0 and the reference of the comparison). It queues, as DVC experiments of HEAD:
#   - one evaluation-only change, test-time EM steps T_s = 1 (evaluate.omniglot.test_em_iters=1),
#   - every seed in SEEDS of the keys in SEED_KEYS (both Omniglot models by default),
# runs the queue, then writes docs/statistics/{compare,seeds}.txt plus JSON and PNG per command
# (also MLflow runs, stages `compare` and `seeds`). The cross-way numbers are in the report (no
# extra run). On the 2-core CPU with 3000 steps per model: about 11 minutes per seed, 1 for T_s = 1.
#   bash scripts/statistics.sh
#   SEEDS="1 2 3 4" bash scripts/statistics.sh
#   SEED_KEYS="metatrain.omniglot_5way.seed metatrain.omniglot_20way.seed related.lasium_omniglot.seed" bash scripts/statistics.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
read -r -a seeds <<< "${SEEDS:-1 2}"
read -r -a keys <<< "${SEED_KEYS:-metatrain.omniglot_5way.seed metatrain.omniglot_20way.seed}"
out=docs/statistics
tag="$(git rev-parse --short HEAD)"

if ! git diff --quiet HEAD -- metrics dvc.lock params.yaml; then
  echo "metrics/, dvc.lock or params.yaml differ from HEAD: run dvc repro and commit its results first" >&2
  exit 1
fi
dvc status --quiet || { echo "the pipeline is not up to date: run dvc repro and commit first" >&2; exit 1; }

dvc exp run --queue -n "ts1-$tag" -S evaluate.omniglot.test_em_iters=1
runs=(HEAD)
for seed in "${seeds[@]}"; do
  sets=()
  for key in "${keys[@]}"; do sets+=(-S "$key=$seed"); done
  dvc exp run --queue -n "seed$seed-$tag" "${sets[@]}"
  runs+=("seed$seed-$tag")
done
dvc queue start --jobs 1
# (the status is read into a variable first: with pipefail, `dvc queue status | grep -q` fails
# whenever grep exits before dvc has written everything)
while grep -Eq '\b(Queued|Running)\b' <<< "$(dvc queue status)"; do sleep 30; done
dvc queue status
if grep -q Failed <<< "$(dvc queue status)"; then
  echo "a queued run failed: dvc queue logs <name>" >&2
  exit 1
fi

mkdir -p "$out"
python -m metagmvae.analysis.compare HEAD "ts1-$tag" --dataset omniglot --out "$out/compare" | tee "$out/compare.txt"
python -m metagmvae.analysis.seeds "${runs[@]}" --dataset omniglot --out "$out/seeds" | tee "$out/seeds.txt"
echo "wrote $out/ (a dated page in docs/studies/ quotes them)"
