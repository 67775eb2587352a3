"""SimCLR: the NT-Xent loss against a direct computation, the batched augmentations against
torchvision's reference transforms, and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F
from torchvision.transforms import functional as TF

from metagmvae import simclr
from metagmvae.schedule import learning_rate


def direct_nt_xent(p1: torch.Tensor, p2: torch.Tensor, tau: float) -> float:
    """SimCLR's loss written out anchor by anchor: -log(exp(s_pos) / sum over the 2N - 1 others)."""
    z = torch.cat([p1, p2]).double()
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        positive = (i + n) % n2
        sims = [float(z[i] @ z[k]) / tau for k in range(n2) if k != i]
        pos = float(z[i] @ z[positive]) / tau
        total += -(pos - math.log(sum(math.exp(s) for s in sims)))
    return total / n2


def test_nt_xent_equals_the_direct_computation():
    gen = torch.Generator().manual_seed(0)
    p1 = F.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    p2 = F.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    assert simclr.nt_xent(p1, p2, 0.5).item() == pytest.approx(direct_nt_xent(p1, p2, 0.5), rel=1e-5)
    # identical views of very different images: the loss is near its floor
    eye = torch.eye(6, 8)
    assert simclr.nt_xent(eye, eye, 0.05).item() < 1e-3


def test_resized_crop_matches_torchvision_inside_the_box():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 84, 84, generator=gen)
    boxes = torch.tensor([[0.0, 0.0, 84.0, 84.0], [10.0, 5.0, 40.0, 60.0], [30.0, 30.0, 21.0, 21.0], [0, 50, 84, 34]])
    flip = torch.tensor([False, False, True, False])
    ours = simclr.resized_crop(images, boxes, flip)
    for k, (x0, y0, w, h) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(images[k], y0, x0, h, w, [84, 84], antialias=False)
        if flip[k]:
            ref = TF.hflip(ref)
        # torchvision clamps at the box edge, we sample the image beyond it: compare the interior
        inner = (slice(None), slice(2, -2), slice(2, -2))
        assert torch.allclose(ours[k][inner], ref[inner], atol=1e-5), k
    assert torch.allclose(ours[0], images[0], atol=1e-5)  # the full box is the identity


def test_crop_boxes_follow_the_scale_and_ratio_ranges():
    boxes = simclr.crop_boxes(2000, 84, torch.Generator().manual_seed(2), "cpu")
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 84).all() and (y0 + h <= 84).all()
    area = w * h / 84**2
    assert area.min() > 0.06 and area.max() <= 1.0
    assert 0.3 < area.mean() < 0.7  # uniform scale on (0.08, 1), truncated by the fit test


def test_colour_operations_match_torchvision():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 16, 16, generator=gen)
    factor = torch.tensor([0.3, 1.0, 1.7])
    for k in range(3):
        contrast = simclr._blend(x, simclr.grayscale(x).mean((1, 2, 3), keepdim=True), factor)
        assert torch.allclose(contrast[k], TF.adjust_contrast(x[k], float(factor[k])), atol=1e-5)
        saturation = simclr._blend(x, simclr.grayscale(x), factor)
        assert torch.allclose(saturation[k], TF.adjust_saturation(x[k], float(factor[k])), atol=1e-5)
        assert torch.allclose(simclr.grayscale(x)[k], TF.rgb_to_grayscale(x[k]), atol=1e-5)
    shift = torch.tensor([-0.2, 0.05, 0.15])
    hue = simclr.shift_hue(x, shift)
    for k in range(3):
        assert torch.allclose(hue[k], TF.adjust_hue(x[k], float(shift[k])), atol=1e-4)


def test_augment_gives_two_different_normalised_views_reproducibly():
    images = torch.randint(0, 256, (8, 3, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    a = simclr.augment(images, torch.Generator().manual_seed(5))
    b = simclr.augment(images, torch.Generator().manual_seed(5))
    c = simclr.augment(images, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 84, 84) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.allclose(a, c)
    plain = simclr.plain(images)
    mean = torch.tensor(simclr.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(simclr.IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(plain * std + mean, images.float() / 255, atol=1e-6)


def test_encoder_gives_256_features_and_unit_projections():
    model = simclr.SimCLR().eval()
    assert model.encoder(torch.zeros(2, 3, 84, 84)).shape == (2, 256)
    p1, p2 = model(torch.randn(2, 3, 84, 84), torch.randn(2, 3, 84, 84))
    assert p1.shape == (2, 128) and torch.allclose(p1.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_learning_rate_warms_up_then_decays_once_to_zero():
    total, warmup, base = 100, 10, 1e-3
    lrs = [learning_rate(s, total, warmup, base) for s in range(total)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(base)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # monotone after warm-up
    assert lrs[55] == pytest.approx(base / 2, rel=0.05) and lrs[-1] < 1e-6


def test_resize_to_a_lower_resolution_keeps_the_image_and_feature_width_follows():
    images = torch.zeros(2, 3, 84, 84, dtype=torch.uint8)
    images[:, :, :42] = 200  # top half bright
    small = simclr.resize(images, 42)
    assert small.shape == (2, 3, 42, 42) and small.dtype == torch.uint8
    assert (small[:, :, :20] == 200).all() and (small[:, :, 22:] == 0).all()
    assert simclr.resize(images, 84) is images
    assert simclr.feature_size(image_size=84, blocks=5, hidden=64) == 256
    assert simclr.feature_size(image_size=42, blocks=4, hidden=64) == 256
    assert simclr.feature_size(image_size=56, blocks=5, hidden=64) == 64
    assert simclr.feature_size(image_size=16, blocks=5, hidden=64) == 0
    model = simclr.SimCLR(64, blocks=4, image_size=42)
    p1, _ = model(simclr.augment(small, torch.Generator().manual_seed(0)), simclr.plain(small))
    assert p1.shape == (2, 128)
