"""Stage `download`: fetch a dataset's raw files from the ordered sources in params.yaml, verified.

Usage: python stages/download.py omniglot
Output: data/<dataset>/raw/ (only once every file is fetched and verified).
"""

import argparse
from pathlib import Path

from metagmvae.io import project_root
from metagmvae.pipeline import download
from metagmvae.validate import load_valid_params
from metagmvae.walltime import stage_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    download.run(args.dataset, load_valid_params(args.params), Path("data") / args.dataset / "raw", root=project_root())


if __name__ == "__main__":
    with stage_clock(__file__):
        main()
