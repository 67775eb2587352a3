"""The related methods (LASIUM, LEO, SIB) of the `related` stage; their contract and the methods by
name are in :mod:`metagmvae.related.registry`."""

import torch

Splits = dict[str, torch.Tensor]
"""A method's training data: ``"train"`` and ``"val"`` -> class-structured items ``[C, n, *item]``."""
