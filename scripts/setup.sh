#!/usr/bin/env bash
# Create .venv with everything the pipeline and its tests need. Idempotent: it reinstalls only
# when pyproject.toml or requirements/constraints.txt change (about 2 minutes the first time).
# Sourced by scripts/repro.sh and scripts/test.sh, which then use the venv's python and dvc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=.venv
stamp="$VENV/.installed-$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt)
  # torch first, pinned: a looser requirement would make pip fetch another multi-GB build.
  "${pip[@]}" torch==2.14.1 torchvision==0.29.1
  "${pip[@]}" -e '.[dev]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"
export DVC_NO_ANALYTICS=1
