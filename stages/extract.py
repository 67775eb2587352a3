"""Stage `extract`: SimCLR features (encoder in eval mode, no augmentation) of every split to HDF5.

Usage: python stages/extract.py mini_imagenet
Output: data/<dataset>/<dataset>.h5 (float32 [classes, images, 256] per split, labels, class
and file names, per-split feature statistics, the encoder checkpoint's SHA-256 and training
budget), the feature store the meta-learners read, and metrics/features.json (a summary).
"""

import argparse
from pathlib import Path

from metagmvae.data.stores import store_path
from metagmvae.pipeline import extract
from metagmvae.validate import load_valid_params
from metagmvae.walltime import stage_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    extract.run(
        args.dataset,
        load_valid_params(args.params),
        images_path=Path("data") / args.dataset / "raw" / "images.h5",
        encoder_path=Path("models") / args.dataset / "simclr" / "simclr.pt",
        out_path=store_path(args.dataset),
        metrics_path=Path("metrics") / "features.json",
    )


if __name__ == "__main__":
    with stage_clock(__file__):
        main()
