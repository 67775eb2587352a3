"""Stage `metatrain`: meta-train one Meta-GMVAE model (a section of `metatrain` in params.yaml).

Usage: python stages/metatrain.py omniglot_5way
Outputs: models/<dataset>/<name>/ (best_<s>shot.pt per validation shot, history.json,
summary.json), plots/<dataset>/<name>/ (training curves, reconstructions and samples),
plots/<dataset>/curves/<name>-{train,val}.csv (DVC plot data) and metrics/train/<name>.json
(best validation accuracies, training wall time).
An interrupted run resumes from .resume/<name>-<config hash>/ when started again with the
same parameters.
"""

import argparse
from pathlib import Path

from metagmvae.config import section
from metagmvae.data.stores import store_path
from metagmvae.pipeline import metatrain
from metagmvae.validate import load_valid_params
from metagmvae.walltime import stage_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_valid_params(args.params)
    dataset = section(params, "metatrain", args.name).get("dataset")
    metatrain.run(
        args.name,
        params,
        store=store_path(dataset),
        episodes_path=Path("data") / dataset / "episodes.h5",
        out_dir=Path("models") / dataset / args.name,
        plots_dir=Path("plots") / dataset / args.name,
        curves_dir=Path("plots") / dataset / "curves",
        metrics_path=Path("metrics") / "train" / f"{args.name}.json",
        resume_root=Path(".resume"),
    )


if __name__ == "__main__":
    with stage_clock(__file__):
        main()
