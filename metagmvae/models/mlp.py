"""Gaussian decoder over cached feature vectors (Mini-ImageNet, docs/official-code.md §2.5)."""

from __future__ import annotations

import torch
from torch import nn


class FeatureDecoder(nn.Module):
    """``[N, D] -> [N, out]``: Linear(D, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, out) -> ReLU.

    The output is the mean of a fixed-variance Gaussian over the (non-negative) feature vector;
    the final ReLU matches the non-negative SimCLR features.
    """

    def __init__(self, latent: int = 32, hidden: int = 512, out: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out),
            nn.ReLU(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    @staticmethod
    def nll(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error summed over features, per sample (the official reconstruction term:
        Gaussian negative log-likelihood with variance 1/2, up to a constant): ``[N, F] -> [N]``."""
        return (mean - target).pow(2).sum(-1)
