"""Stage `pretrain`: SimCLR self-supervised pre-training of the Conv5 encoder (Mini-ImageNet).

Usage: the `pretrain` command of dvc.yaml; for data-parallel training on several GPUs, the same
arguments after `torchrun --nproc_per_node=<gpus>` instead of `python`.
Outputs: the --out folder (simclr.pt, history.json) and the --metrics file. An interrupted run
resumes from <--resume>/simclr-<config hash>-w<processes>/ at its last saved step.
"""

from pathlib import Path

from metagmvae.pipeline import pretrain
from metagmvae.pipeline import shared as stage

parser = stage.parser(__doc__)
parser.add_argument("dataset")
for option in ("--images", "--out", "--metrics", "--resume"):
    parser.add_argument(option, type=Path, required=True)

if __name__ == "__main__":
    stage.run(
        parser,
        lambda p, a: pretrain.run(a.dataset, p.section("pretrain", a.dataset), a.images, a.out, a.metrics, a.resume),
    )
