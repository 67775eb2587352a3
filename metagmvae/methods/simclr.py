"""SimCLR for Mini-ImageNet (docs/official-code.md §1.3): Conv5 encoder, projection head, NT-Xent, and the
two-view augmentation done batched on tensors (so it runs on the GPU when there is one).

Shapes: ``N`` images, images ``[N, 3, 84, 84]`` float in [0, 1] before normalisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from metagmvae.models.conv import ConvEncoder
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.distributed import all_gather_with_grad
from metagmvae.schema.pretrain import feature_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images ``[N, 3, H, W]`` resized to ``size`` x ``size`` (antialiased bilinear,
    rounded back to uint8); unchanged when already that size. Pre-training at a lower
    resolution than the stored 84 x 84 cuts the convolution cost by the square of the ratio."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


class SimCLR(nn.Module):
    """Conv encoder (``blocks`` blocks of ``hidden`` channels, floor-mode pooling; Conv5 on
    84 x 84 images gives 256-d features) and the projection head Linear(d, d) -> ReLU ->
    Linear(d, 128), L2-normalised."""

    def __init__(self, hidden: int = 64, *, blocks: int = 5, image_size: int = 84, projection: int = 128):
        super().__init__()
        dim = feature_size(image_size=image_size, blocks=blocks, hidden=hidden)
        if dim == 0:
            raise ValueError(f"{image_size} x {image_size} images do not survive {blocks} 2x2 poolings")
        self.encoder = ConvEncoder(in_channels=3, hidden=hidden, blocks=blocks, ceil_mode=False)
        self.projector = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, projection))
        self.image_size = image_size

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projections of both views, ``[N, 128]`` each. The views go through the encoder in two
        calls, so BatchNorm statistics are per view batch, as in the official code."""
        return tuple(F.normalize(self.projector(self.encoder(v)).float(), dim=-1) for v in (view1, view2))


def nt_xent(p1: torch.Tensor, p2: torch.Tensor, temperature: float, rank: int = 0) -> torch.Tensor:
    """NT-Xent over the global batch, for this process's anchors.

    p1, p2: ``[n, d]`` L2-normalised projections of this process's images (two views). Candidates
    are both views of every image on every process (gathered with gradient); each anchor's
    positive is the other view of its image, its negatives the other ``2N - 2`` projections.
    Returns the sum of this process's anchor losses divided by ``2N`` (``N`` global images), so
    the losses of all processes add up to the single-process loss on the whole batch.
    """
    n = p1.shape[0]
    all1, all2 = all_gather_with_grad(p1), all_gather_with_grad(p2)
    total = all1.shape[0]
    candidates = torch.cat([all1, all2])  # [2N, d]
    anchors = torch.cat([p1, p2])  # [2n, d]
    own = torch.arange(n, device=p1.device) + rank * n  # global index of each local image
    anchor_index = torch.cat([own, own + total])
    positive = torch.cat([own + total, own])
    logits = anchors @ candidates.T / temperature
    logits[torch.arange(2 * n, device=p1.device), anchor_index] = -math.inf  # never the anchor itself
    return F.cross_entropy(logits, positive, reduction="sum") / (2 * total)


# ---------------------------------------------------------------- batched augmentation


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def crop_boxes(
    n: int, size: int, gen: torch.Generator, device, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), tries: int = 10
) -> torch.Tensor:
    """Random-resized-crop boxes ``[n, 4]`` (x0, y0, w, h in pixels), torchvision's rule: up to
    ``tries`` draws of area and log-aspect per image, the first that fits wins, else the whole
    image (84x84 input, so the ratio clamp of the fallback is the identity)."""
    area = size * size * _uniform(n * tries, *scale, gen, device).view(n, tries)
    log_ratio = _uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), gen, device).view(n, tries)
    aspect = log_ratio.exp()
    w = (area * aspect).sqrt().round()
    h = (area / aspect).sqrt().round()
    fits = (w > 0) & (w <= size) & (h > 0) & (h <= size)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(n, dtype=torch.long, device=device))
    w = torch.where(fits.any(1), w.gather(1, first[:, None])[:, 0], torch.full((n,), float(size), device=device))
    h = torch.where(fits.any(1), h.gather(1, first[:, None])[:, 0], torch.full((n,), float(size), device=device))
    x0 = ((size - w + 1) * torch.rand(n, generator=gen, device=device)).floor()
    y0 = ((size - h + 1) * torch.rand(n, generator=gen, device=device)).floor()
    return torch.stack([x0, y0, w, h], dim=1)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Crop every image to its box and resize back to the input size, bilinear, mirrored where
    ``flip``: one ``grid_sample`` over the batch. images ``[N, C, H, W]``; boxes ``[N, 4]``."""
    n, _, height, width = images.shape
    x0, y0, w, h = boxes.unbind(1)
    sign = 1.0 - 2.0 * flip.float()
    theta = torch.zeros(n, 2, 3, device=images.device)
    theta[:, 0, 0] = sign * w / width
    theta[:, 0, 2] = (2 * x0 + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * y0 + h) / height - 1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma with torchvision's weights, ``[N, 3, H, W] -> [N, 1, H, W]``."""
    return (0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).clamp(0, 1)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor.view(-1, 1, 1, 1) * a + (1 - factor.view(-1, 1, 1, 1)) * b).clamp(0, 1)


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of every image by ``shift`` (fraction of a turn, per image), via HSV."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    # HSV -> RGB
    i = (hue * 6.0).floor()
    f = hue * 6.0 - i
    p, q, t = maxc * (1 - sat), maxc * (1 - sat * f), maxc * (1 - sat * (1 - f))
    i = i.long() % 6
    v = maxc
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, rgb in enumerate(choices):
        mask = i == k
        for ch in range(3):
            out[ch] = torch.where(mask, rgb[ch], out[ch])
    return torch.stack(out, 1)


def color_jitter(x: torch.Tensor, gen: torch.Generator, strength=(0.8, 0.8, 0.8, 0.2), p: float = 0.8) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter, applied (in that fixed order) to each
    image with probability ``p``; factors drawn per image as in torchvision's ColorJitter."""
    n, device = x.shape[0], x.device
    apply = torch.rand(n, generator=gen, device=device) < p
    b, c, s, h = strength
    bright = torch.where(apply, _uniform(n, 1 - b, 1 + b, gen, device), torch.ones(n, device=device))
    contrast = torch.where(apply, _uniform(n, 1 - c, 1 + c, gen, device), torch.ones(n, device=device))
    sat = torch.where(apply, _uniform(n, 1 - s, 1 + s, gen, device), torch.ones(n, device=device))
    hue = torch.where(apply, _uniform(n, -h, h, gen, device), torch.zeros(n, device=device))
    x = (x * bright.view(-1, 1, 1, 1)).clamp(0, 1)
    x = _blend(x, grayscale(x).mean((1, 2, 3), keepdim=True), contrast)
    x = _blend(x, grayscale(x), sat)
    return shift_hue(x, hue)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of ``[N, 3, H, W]`` in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(images: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.08, 1.0)) -> torch.Tensor:
    """One random view of every image (docs/official-code.md §1.3): random-resized crop (area
    ``scale``, 0.08-1 in the paper; aspect 3/4-4/3, bilinear), horizontal flip (p 0.5), colour
    jitter (0.8, 0.8, 0.8, 0.2; p 0.8), grayscale (p 0.2), ImageNet normalisation. images: uint8
    ``[N, 3, S, S]`` (S = 84 in the paper; the view keeps the input's size)."""
    x = images.float() / 255.0
    n, size = x.shape[0], x.shape[-1]
    boxes = crop_boxes(n, size, gen, x.device, scale=scale)
    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    x = color_jitter(resized_crop(x, boxes, flip).clamp(0, 1), gen)
    gray = torch.rand(n, generator=gen, device=x.device) < 0.2
    x = torch.where(gray.view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)
    return normalize(x)


def plain(images: torch.Tensor) -> torch.Tensor:
    """The non-augmented transform used for feature extraction: to [0, 1], then normalise."""
    return normalize(images.float() / 255.0)


def load_encoder(path: Path, rt: Runtime) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The encoder of a ``simclr.pt`` checkpoint, in eval mode, and its configuration (whose
    ``image_size`` its inputs must be resized to, see :func:`resize`)."""
    state = checkpoint.load(path, rt.device)
    cfg = state["config"]
    model = SimCLR(cfg["hidden"], blocks=cfg["blocks"], image_size=cfg["image_size"])
    model.load_state_dict(state["model"])
    return rt.prepare(model.encoder).eval(), state["config"]
