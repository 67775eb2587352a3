#!/usr/bin/env bash
# For a machine with a GPU (no DVC or MLflow needed there): benchmark, train the Omniglot 5-way
# paper profile for a wall-clock budget, test it, and leave everything in one folder.
#   bash scripts/device_run.sh OUT [PREVIOUS] [extra arguments of python -m benchmarks.device_run]
# PREVIOUS is an earlier call's OUT: training continues from its state (README "GPU").
# Needs data/omniglot/omniglot.h5 and episodes.h5 (carry them) and a Python with torch, numpy,
# h5py, pyyaml, pydantic and tqdm; the package is used from this checkout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${1:?usage: bash scripts/device_run.sh OUT [PREVIOUS] [options]}"
shift
previous=()
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  previous=(--previous "$1")
  shift
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 METAGMVAE_TRACKING=off
exec "${PYTHON:-python3}" -m benchmarks.device_run --out "$out" "${previous[@]}" \
  --store data/omniglot/omniglot.h5 --episodes data/omniglot/episodes.h5 "$@"
