#!/usr/bin/env bash
# The main job: set up .venv, then run the DVC pipeline.
#   bash scripts/repro.sh                  quick profile (params.yaml as committed), `dvc repro`
#   bash scripts/repro.sh --profile paper  paper settings (profiles/paper.yaml) as a DVC experiment
# Extra arguments go to dvc (e.g. `bash scripts/repro.sh --force`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
if [ "${1:-}" = "--profile" ]; then
  profile="$2"
  shift 2
  mapfile -t sets < <(python -m metagmvae.profile "$profile")
  checked="$(mktemp --suffix=.yaml)"
  python -m metagmvae.profile "$profile" --write "$checked"
  python -m metagmvae.validate "$checked" && rm -f "$checked"  # every problem, before any work
  exec dvc exp run --name "$profile-$(date +%Y%m%d-%H%M%S)" "${sets[@]}" "$@"
fi
python -m metagmvae.validate params.yaml  # every problem, before any work
exec dvc repro "$@"
