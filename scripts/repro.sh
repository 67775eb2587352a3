#!/usr/bin/env bash
# The main job: set up .venv, check the parameters, run the DVC pipeline, then regenerate the
# numbers of README.md and docs/ from the new metrics (`metagmvae docs`).
#   bash scripts/repro.sh                  quick profile (params.yaml as committed), `dvc repro`
#   bash scripts/repro.sh --profile cpu    a profile (profiles/<name>.yaml) as a DVC experiment
# Extra arguments go to dvc (e.g. `bash scripts/repro.sh --force`). Invalid parameters or an
# unknown profile stop it, with one line per problem, before DVC starts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
dvc="${METAGMVAE_DVC:-dvc}"  # the tests put a stand-in here to see whether DVC was started
if [ "${1:-}" = "--profile" ]; then
  profile="${2:?--profile needs a name}"
  shift 2
  sets="$(python -m metagmvae.cli.profile "$profile")"  # an unknown profile or key stops here (set -e)
  checked="$(mktemp --suffix=.yaml)"
  trap 'rm -f "$checked"' EXIT
  python -m metagmvae.cli.profile "$profile" --write "$checked"
  python -m metagmvae.cli.validate "$checked"  # every problem, before any work; a failure stops here
  args=()
  [ -z "$sets" ] || mapfile -t args <<< "$sets"
  "$dvc" exp run --name "$profile-$(date +%Y%m%d-%H%M%S)" "${args[@]}" "$@"
else
  python -m metagmvae.cli.validate params.yaml  # every problem, before any work
  "$dvc" repro "$@"
fi
python -m metagmvae.cli.docs  # README.md and docs/ show the metrics now in the workspace
