#!/usr/bin/env bash
# The test command: set up .venv, lint, then run the test suite (tiny data built from the mirrors).
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k em`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ruff check .
ruff format --check .
python -m pytest "$@"
