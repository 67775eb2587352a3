"""Stage `evaluate`: a dataset's models and baselines on its fixed 1000-episode test sets.

Usage: the `evaluate@<dataset>` command of dvc.yaml.
Outputs: --metrics (accuracy and 95% CI per way/shot and method, cross-way results as
meta_gmvae_trained_<K>way), every test episode's result beside it (metrics/episodes/<dataset>.json,
for paired comparisons), the figures --accuracy-figure and --embedding-figure, and the DVC plot
data --accuracy-table.
"""

from pathlib import Path

from metagmvae.pipeline import evaluate
from metagmvae.pipeline import shared as stage

parser = stage.parser(__doc__)
parser.add_argument("dataset")
options = ("--store", "--episodes", "--models", "--metrics", "--accuracy-figure", "--embedding-figure")
for option in (*options, "--accuracy-table"):
    parser.add_argument(option, type=Path, required=True)


def main(params, args) -> None:
    outputs = evaluate.Outputs(args.metrics, args.accuracy_figure, args.embedding_figure, args.accuracy_table)
    evaluate.run(
        args.dataset, params.section("evaluate", args.dataset), args.store, args.episodes, args.models, outputs
    )


if __name__ == "__main__":
    stage.run(parser, main)
