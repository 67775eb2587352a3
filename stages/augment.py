"""Stage `augment`: Omniglot character split, 28x28 resize, four rotations as new classes -> HDF5.

Usage (dvc.yaml): python stages/augment.py --raw data/omniglot/raw --store data/omniglot/omniglot.h5 \
    --split data/omniglot/split.json
Outputs: the store (4800 / 400 / 1292 classes of 20 images) and the split (the character names
of each split).
"""

from pathlib import Path

from metagmvae.pipeline import augment
from metagmvae.pipeline import shared as stage

parser = stage.parser(__doc__)
for option in ("--raw", "--store", "--split"):
    parser.add_argument(option, type=Path, required=True)

if __name__ == "__main__":
    stage.run(parser, lambda p, a: augment.run(p.section("augment", "omniglot"), a.raw, a.store, a.split))
