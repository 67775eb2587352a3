"""Stage `metatrain`: meta-train one Meta-GMVAE model (a section of `metatrain` in params.yaml).

Usage: the `metatrain@<name>` command of dvc.yaml.
Outputs: --out (best_<s>shot.pt per validation shot, history.json, summary.json), --plots
(training curves, reconstructions and samples), the DVC plot data --train-curve and --val-curve,
and --metrics (best validation accuracies, training wall time). An interrupted run resumes from
<--resume>/<name>-<config hash>/ when started again with the same parameters.
"""

from pathlib import Path

from metagmvae.pipeline import metatrain
from metagmvae.pipeline import shared as stage

parser = stage.parser(__doc__)
parser.add_argument("name")
for option in ("--store", "--episodes", "--out", "--plots", "--train-curve", "--val-curve", "--metrics", "--resume"):
    parser.add_argument(option, type=Path, required=True)


def main(params, args) -> None:
    cfg = params.section("metatrain", args.name)
    outputs = metatrain.Outputs(args.out, args.plots, args.train_curve, args.val_curve, args.metrics)
    metatrain.run(args.name, cfg, args.store, args.episodes, outputs, args.resume)


if __name__ == "__main__":
    stage.run(parser, main)
