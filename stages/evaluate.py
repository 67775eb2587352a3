"""Stage `evaluate`: a dataset's models and baselines on its fixed 1000-episode test sets.

Usage: python stages/evaluate.py omniglot
Outputs: metrics/<dataset>.json (accuracy and 95% CI per way/shot and method, cross-way
results as meta_gmvae_trained_<K>way), metrics/episodes/<dataset>.json (every test episode's
result, for paired comparisons) and plots/<dataset>/accuracy.png.
"""

import argparse
from pathlib import Path

from metagmvae.data.stores import store_path
from metagmvae.pipeline import evaluate
from metagmvae.validate import load_valid_params
from metagmvae.walltime import stage_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    evaluate.run(
        args.dataset,
        load_valid_params(args.params),
        store=store_path(args.dataset),
        episodes_path=Path("data") / args.dataset / "episodes.h5",
        models_dir=Path("models") / args.dataset,
        out_path=Path("metrics") / f"{args.dataset}.json",
        plots_dir=Path("plots") / args.dataset,
    )


if __name__ == "__main__":
    with stage_clock(__file__):
        main()
