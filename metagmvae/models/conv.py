"""Convolutional image encoder (Conv4) and transposed-convolution Bernoulli decoder (Omniglot)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_block(in_ch: int, out_ch: int, ceil_mode: bool) -> nn.Sequential:
    """3x3 conv (stride 1, pad 1) -> BatchNorm -> ReLU -> 2x2 max-pool."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=ceil_mode),
    )


class ConvEncoder(nn.Module):
    """``blocks`` conv blocks, flattened channel-major: ``[N, C, H, W] -> [N, out_dim]``.

    Omniglot uses four blocks with ceil-mode pooling (28 -> 14 -> 7 -> 4 -> 2, 64*2*2 = 256);
    SimCLR's Conv5 uses five with floor mode (84 -> 42 -> 21 -> 10 -> 5 -> 2).
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, blocks: int = 4, ceil_mode: bool = True):
        super().__init__()
        chans = [in_channels] + [hidden] * blocks
        self.net = nn.Sequential(*[conv_block(a, b, ceil_mode) for a, b in zip(chans, chans[1:])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def _deconv(in_ch: int, out_ch: int, kernel: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=2, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(True)]


class DeconvDecoder(nn.Module):
    """Bernoulli decoder ``p(x | z)``: ``[N, D] -> logits [N, 1, 28, 28]``.

    MLP D -> 256 -> 256 -> 256 (ELU after each, the last included), reshape to
    ``[hidden, 2, 2]``, then transposed convs 2 -> 4 -> 7 (kernel 3) -> 14 -> 28. It returns
    logits; the official sigmoid is applied by :meth:`mean` (and inside the BCE-with-logits loss).
    """

    def __init__(self, latent: int = 64, hidden: int = 64, out_channels: int = 1):
        super().__init__()
        width = hidden * 4
        self.hidden = hidden
        self.mlp = nn.Sequential(
            nn.Linear(latent, width), nn.ELU(), nn.Linear(width, width), nn.ELU(), nn.Linear(width, width), nn.ELU()
        )
        self.deconv = nn.Sequential(
            *_deconv(hidden, hidden, 4),
            *_deconv(hidden, hidden, 3),
            *_deconv(hidden, hidden, 4),
            nn.ConvTranspose2d(hidden, out_channels, 4, stride=2, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mlp(z).view(-1, self.hidden, 2, 2)
        return self.deconv(h)

    @staticmethod
    def nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Bernoulli negative log-likelihood per sample, summed over pixels: ``[N, ...] -> [N]``."""
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return bce.flatten(1).sum(1)

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli means (pixel intensities in [0, 1]): ``[N, D] -> [N, 1, 28, 28]``."""
        return torch.sigmoid(self(z))
