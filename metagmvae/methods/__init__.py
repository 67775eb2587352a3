"""The methods: Meta-GMVAE (:mod:`.meta_gmvae`), SimCLR (:mod:`.simclr`, :mod:`.simclr_pretrain`), the
few-shot baselines, and the related methods LASIUM, LEO and SIB of the `related` stage (their
contract and the methods by name: :mod:`.registry`)."""

import torch

Splits = dict[str, torch.Tensor]
"""A method's training data: ``"train"`` and ``"val"`` -> class-structured items ``[C, n, *item]``."""
