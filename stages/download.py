"""Stage `download`: fetch a dataset's raw files from the ordered sources in params.yaml, verified.

Usage (dvc.yaml): python stages/download.py omniglot --out data/omniglot/raw
Output: the --out folder (only once every file is fetched and verified).
"""

from pathlib import Path

from metagmvae.pipeline import download
from metagmvae.pipeline import shared as stage
from metagmvae.runtime.io import project_root

parser = stage.parser(__doc__)
parser.add_argument("dataset")
parser.add_argument("--out", type=Path, required=True)

if __name__ == "__main__":
    stage.run(parser, lambda p, a: download.run(p.section("download", a.dataset), a.out, root=project_root()))
