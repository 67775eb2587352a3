"""Stage `augment`: Omniglot character split, 28x28 resize, four rotations as new classes -> HDF5.

Usage: python stages/augment.py
Outputs: data/omniglot/omniglot.h5 (4800 / 400 / 1292 classes of 20 images) and
data/omniglot/split.json (the character names of each split).
"""

import argparse
from pathlib import Path

from metagmvae.pipeline import augment
from metagmvae.validate import load_valid_params
from metagmvae.walltime import stage_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    augment.run(load_valid_params(args.params), raw_dir=Path("data/omniglot/raw"), out_dir=Path("data/omniglot"))


if __name__ == "__main__":
    with stage_clock(__file__):
        main()
