#!/usr/bin/env bash
# Mutation testing (mutmut) of the modules whose numbers users read, against the fast unit tests
# listed under [tool.mutmut] in pyproject.toml. Slow (tens of minutes on 2 cores), not part of CI.
#   bash scripts/mutation.sh            every mutant of the MUTATED functions below, then the scores
#   bash scripts/mutation.sh --scores   only print the scores of the last run (mutants/)
# mutmut copies the package into mutants/, mutates one function at a time and runs only the tests
# that call it; `python -m mutmut show NAME` prints a mutant's diff, `python -m mutmut browse` all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# models/em.py, evaluation/accuracy.py, models/gmvae.py and methods/baselines.py whole; the checkpoint
# selection (training/loop.py: BestOnValidation, and the outputs Meta-GMVAE copies from it);
# the NT-Xent loss of methods/simclr.py.
MUTATED=(
  "metagmvae.models.em.*"
  "metagmvae.evaluation.accuracy.*"
  "metagmvae.models.gmvae.*"
  "metagmvae.methods.baselines.*"
  "metagmvae.training.loop.xǁBestOnValidationǁ*"
  "metagmvae.methods.meta_gmvae.x__write_outputs__*"
  "metagmvae.methods.simclr.x_nt_xent__*"
)
if [ "${1:-}" != "--scores" ]; then
  rm -rf mutants
  # one OpenMP thread per test process: forked workers, and no oversubscription of the cores
  OMP_NUM_THREADS=1 python -m mutmut run --max-children "${MUTATION_JOBS:-2}" "${MUTATED[@]}" || true
fi
python -m mutmut results --all true | python scripts/mutation_score.py "${MUTATED[@]}"
