"""Stage `related`: one related method (a section of `related` in params.yaml) on the same episodes.

Usage: the `related@<name>` command of dvc.yaml.
Outputs: --out (model.pt, summary.json), --plots (accuracy.png; for LASIUM also tasks.png, a few
generated tasks), --metrics (accuracy and 95% CI per way/shot, the schema of the evaluate stage's
metrics) and every test episode's result beside it (metrics/related/episodes/<name>.json). An
interrupted training resumes from <--resume>/<name>-<config hash>-... when started again.
"""

from pathlib import Path

from metagmvae.pipeline import related
from metagmvae.pipeline import shared as stage

parser = stage.parser(__doc__)
parser.add_argument("name")
for option in ("--store", "--episodes", "--out", "--plots", "--metrics", "--resume"):
    parser.add_argument(option, type=Path, required=True)


def main(params, args) -> None:
    spec = params.section("related", args.name)
    related.run(args.name, spec, args.store, args.episodes, args.out, args.plots, args.metrics, args.resume)


if __name__ == "__main__":
    stage.run(parser, main)
