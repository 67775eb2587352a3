"""Stage `episodes`: draw the fixed validation and test episodes once, from a seed, into a file.

Usage (dvc.yaml): python stages/episodes.py omniglot --store data/omniglot/omniglot.h5 \
    --out data/omniglot/episodes.h5
Output: the episode file, read by every training (validation) and evaluation.
"""

from pathlib import Path

from metagmvae.pipeline import episodes
from metagmvae.pipeline import shared as stage

parser = stage.parser(__doc__)
parser.add_argument("dataset")
parser.add_argument("--store", type=Path, required=True)
parser.add_argument("--out", type=Path, required=True)

if __name__ == "__main__":
    stage.run(parser, lambda p, a: episodes.run(a.dataset, p.section("episodes", a.dataset), a.store, a.out))
