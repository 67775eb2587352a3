"""Stage `episodes`: draw the fixed validation and test episodes once, from a seed, into a file.

Usage: python stages/episodes.py omniglot
Output: data/<dataset>/episodes.h5, read by every training (validation) and evaluation.
"""

import argparse
from pathlib import Path

from metagmvae.data.stores import store_path
from metagmvae.pipeline import episodes
from metagmvae.validate import load_valid_params
from metagmvae.walltime import stage_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_valid_params(args.params)
    episodes.run(args.dataset, params, store_path(args.dataset), Path("data") / args.dataset / "episodes.h5")


if __name__ == "__main__":
    with stage_clock(__file__):
        main()
