"""Stage `related`: one related method (a section of `related` in params.yaml) on the same episodes.

Usage: python stages/related.py sib_mini_imagenet
Outputs: models/related/<name>/ (model.pt, summary.json), plots/related/<name>/ (accuracy.png;
LASIUM also tasks.png, a few generated tasks), metrics/related/<name>.json (accuracy and 95%
CI per way/shot, the schema of metrics/<dataset>.json) and metrics/related/episodes/<name>.json
(every test episode's result).
"""

import argparse
from pathlib import Path

from metagmvae.config import section
from metagmvae.data.stores import store_path
from metagmvae.pipeline import related
from metagmvae.validate import load_valid_params
from metagmvae.walltime import stage_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_valid_params(args.params)
    dataset = section(params, "related", args.name)["dataset"]
    related.run(
        args.name,
        params,
        store=store_path(dataset),
        episodes_path=Path("data") / dataset / "episodes.h5",
        out_dir=Path("models") / "related" / args.name,
        plots_dir=Path("plots") / "related" / args.name,
        metrics_path=Path("metrics") / "related" / f"{args.name}.json",
    )


if __name__ == "__main__":
    with stage_clock(__file__):
        main()
