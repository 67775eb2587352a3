"""Stage `extract`: SimCLR features (encoder in eval mode, no augmentation) of every split to HDF5.

Usage: the `extract` command of dvc.yaml.
Outputs: the feature store --store (float32 [classes, images, 256] per split, labels, class and
file names, per-split feature statistics, the encoder checkpoint's SHA-256 and training budget)
that the meta-learners read, and --metrics (a summary).
"""

from pathlib import Path

from metagmvae.pipeline import extract
from metagmvae.pipeline import shared as stage

parser = stage.parser(__doc__)
parser.add_argument("dataset")
for option in ("--images", "--encoder", "--store", "--metrics"):
    parser.add_argument(option, type=Path, required=True)

if __name__ == "__main__":
    stage.run(
        parser,
        lambda p, a: extract.run(a.dataset, p.section("extract", a.dataset), a.images, a.encoder, a.store, a.metrics),
    )
