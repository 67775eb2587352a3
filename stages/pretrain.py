"""Stage `pretrain`: SimCLR self-supervised pre-training of the Conv5 encoder (Mini-ImageNet).

Usage: python stages/pretrain.py mini_imagenet
       torchrun --nproc_per_node=<gpus> stages/pretrain.py mini_imagenet   (data-parallel)
Outputs: models/<dataset>/simclr/ (simclr.pt, history.json) and metrics/train/simclr.json.
An interrupted run resumes from
.resume/simclr-<config hash>-w<processes>/ at its last finished epoch.
"""

import argparse
from pathlib import Path

from metagmvae.pipeline import pretrain
from metagmvae.validate import load_valid_params
from metagmvae.walltime import stage_clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    data = Path("data") / args.dataset
    pretrain.run(
        args.dataset,
        load_valid_params(args.params),
        images_path=data / "raw" / "images.h5",
        out_dir=Path("models") / args.dataset / "simclr",
        metrics_path=Path("metrics") / "train" / "simclr.json",
        resume_root=Path(".resume"),
    )


if __name__ == "__main__":
    with stage_clock(__file__):
        main()
