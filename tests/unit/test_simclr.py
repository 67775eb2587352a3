"""SimCLR: the NT-Xent loss against a direct computation, the batched augmentations against
torchvision's reference transforms and applied at their rates, the learning-rate schedule, and
pre-training that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torchvision.transforms import functional as TF

from metagmvae.data.episodes import sample_episodes
from metagmvae.evaluation.accuracy import episode_accuracies, summarize
from metagmvae.methods import simclr
from metagmvae.methods.baselines import logistic_regression
from metagmvae.methods.simclr_pretrain import pretrain
from metagmvae.runtime.checkpoint import load
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.tracking import Run
from metagmvae.schema.pretrain import PretrainConfig, feature_size
from metagmvae.training.schedule import learning_rate


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


def test_crop_boxes_keep_the_aspect_ratio_range():
    boxes = simclr.crop_boxes(2000, 84, torch.Generator().manual_seed(2), "cpu")
    aspect = boxes[:, 2] / boxes[:, 3]  # w / h
    # drawn log-uniformly in [3/4, 4/3]; w and h (at least 23 px here) are rounded to whole pixels
    rounding = 1 + 1 / 23
    assert (aspect > 3 / 4 / rounding).all() and (aspect < 4 / 3 * rounding).all()
    assert aspect.min() < 0.8 and aspect.max() > 1.25  # both ends are reached
    assert abs(aspect.log().mean()) < 0.02  # symmetric in log-aspect (sd of the mean 0.004)
    narrow = simclr.crop_boxes(2000, 84, torch.Generator().manual_seed(2), "cpu", ratio=(1.0, 1.0))
    assert ((narrow[:, 2] - narrow[:, 3]).abs() <= 1).all()  # square crops, up to rounding


def unnormalised(views: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(simclr.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(simclr.IMAGENET_STD).view(1, 3, 1, 1)
    return views * std + mean


def fraction(flags: torch.Tensor) -> float:
    return flags.double().mean().item()


def test_every_augmentation_is_applied_at_its_rate():
    """400 views of 24 x 24 images: the crop resizes a part of the image (neighbouring pixels of
    i.i.d. noise become correlated), the flip mirrors half of them, the colour jitter changes 80%
    and the grayscale conversion 20%; the output is normalised. Tolerances are 5 binomial sd."""
    gen = torch.Generator().manual_seed(7)
    grey_noise = torch.randint(0, 256, (400, 1, 24, 24), dtype=torch.uint8, generator=gen).expand(400, 3, 24, 24)
    cropped = unnormalised(simclr.augment(grey_noise, torch.Generator().manual_seed(0), scale=(0.08, 0.1)))
    assert cropped.min() > -1e-5 and cropped.max() < 1 + 1e-5  # normalised from [0, 1]
    uncropped = unnormalised(simclr.augment(grey_noise, torch.Generator().manual_seed(0), scale=(1.0, 1.0)))

    def neighbour_correlation(x):
        a, b = x[..., :, :-1].flatten(1), x[..., :, 1:].flatten(1)
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + 1e-12)).mean().item()

    assert neighbour_correlation(cropped) > 0.5 and abs(neighbour_correlation(uncropped)) < 0.1

    # full-image crops of grey images with a bright left half: flips and jitter are all that act
    halves = torch.full((400, 3, 24, 24), 40, dtype=torch.uint8)
    halves[..., :12] = 200
    views = unnormalised(simclr.augment(halves, torch.Generator().manual_seed(1), scale=(1.0, 1.0)))
    flipped = views[..., 12:].mean((1, 2, 3)) > views[..., :12].mean((1, 2, 3))
    assert abs(fraction(flipped) - 0.5) < 5 * 0.025
    source = halves.float() / 255
    expected = torch.where(flipped.view(-1, 1, 1, 1), source.flip(-1), source)
    jittered = (views - expected).abs().amax((1, 2, 3)) > 1e-3
    assert abs(fraction(jittered) - 0.8) < 5 * 0.02

    colour = torch.randint(0, 256, (400, 3, 24, 24), dtype=torch.uint8, generator=gen)
    views = unnormalised(simclr.augment(colour, torch.Generator().manual_seed(2)))
    grey = (views - views.mean(1, keepdim=True)).abs().amax((1, 2, 3)) < 1e-4
    assert abs(fraction(grey) - 0.2) < 5 * 0.02


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
    assert feature_size(image_size=84, blocks=5, hidden=64) == 256
    assert feature_size(image_size=42, blocks=4, hidden=64) == 256
    assert feature_size(image_size=56, blocks=5, hidden=64) == 64
    assert feature_size(image_size=16, blocks=5, hidden=64) == 0
    model = simclr.SimCLR(64, blocks=4, image_size=42)
    p1, _ = model(simclr.augment(small, torch.Generator().manual_seed(0)), simclr.plain(small))
    assert p1.shape == (2, 128)


def patterned_images(classes: int, per_class: int, seed: int, size: int = 16) -> torch.Tensor:
    """uint8 ``[C, n, 3, size, size]``: a class is a random 4 x 4 binary pattern (scaled up); every
    image tints it with its own colour and adds pixel noise, so colour says nothing of the class."""
    gen = torch.Generator().manual_seed(seed)
    grid = (torch.rand(classes, 1, 4, 4, generator=gen) > 0.5).float()
    shape = F.interpolate(grid, size=(size, size), mode="nearest").view(classes, 1, 1, size, size)
    tint = 0.3 + 0.7 * torch.rand(classes, per_class, 3, 1, 1, generator=gen)
    noise = 0.1 * torch.randn(classes, per_class, 3, size, size, generator=gen)
    return (255 * (shape * tint + noise + 0.1).clamp(0, 1)).round().to(torch.uint8)


def few_shot_accuracy(encoder, train_images, test_images, episodes) -> float:
    """LR(SimCLR) as the pipeline scores it: standardised with the training features' statistics,
    a logistic regression per 5-way 1-shot episode of the test classes."""
    with torch.no_grad():
        train = encoder(simclr.plain(train_images.flatten(0, 1))).double()
        test = encoder(simclr.plain(test_images.flatten(0, 1))).view(*test_images.shape[:2], -1)
    stats = (train.mean(0).numpy(), train.std(0, unbiased=False).numpy())
    return summarize(episode_accuracies(logistic_regression(lambda: stats), test, episodes, len(episodes)))["accuracy"]


def test_pretraining_lowers_nt_xent_and_its_features_beat_the_random_encoder(tmp_path):
    """50 SimCLR steps on 8 unlabeled classes of 16 x 16 images: the NT-Xent of fixed views drops,
    and a logistic regression on the features of 10 unseen classes beats the same network at its
    initial weights (measured: 85.8% -> 99.0%, 5-way 1-shot)."""
    cfg = PretrainConfig(
        train_per_class=20,
        epochs=10,
        batch=32,
        lr=3e-3,
        warmup_epochs=0,
        weight_decay=0.0,
        temperature=0.5,
        hidden=16,
        blocks=2,
        image_size=16,
        crop_scale=(0.5, 1.0),
        lr_schedule="constant",
        seed=0,
        checkpoint_every=1000,
        device="cpu",
        precision="fp32",
        channels_last=False,
    )
    rt = Runtime(torch.device("cpu"), "fp32", channels_last=False)
    train_images, test_images = patterned_images(8, 20, seed=1), patterned_images(10, 20, seed=2)
    episodes = sample_episodes(np.random.default_rng(0), 50, 10, 20, 5, 1, 5)
    torch.manual_seed(cfg.seed)  # the initial weights pretrain() starts from
    initial = simclr.SimCLR(cfg.hidden, blocks=cfg.blocks, image_size=cfg.image_size)
    first = train_images.flatten(0, 1)[:64]
    views = [simclr.augment(first, torch.Generator().manual_seed(k), scale=cfg.crop_scale) for k in (1, 2)]

    def accuracy_and_loss(model) -> tuple[float, float]:
        """Few-shot accuracy in eval mode, then the training objective (batch statistics)."""
        accuracy = few_shot_accuracy(model.eval().encoder, train_images, test_images, episodes)
        with torch.no_grad():
            return accuracy, simclr.nt_xent(*model.train()(*views), cfg.temperature).item()

    acc_before, loss_before = accuracy_and_loss(initial)
    pretrain(cfg, rt, train_images.flatten(0, 1), tmp_path / "simclr", tmp_path / "resume", Run(None), progress=False)
    trained = simclr.SimCLR(cfg.hidden, blocks=cfg.blocks, image_size=cfg.image_size)
    trained.load_state_dict(load(tmp_path / "simclr" / "simclr.pt")["model"])
    acc_after, loss_after = accuracy_and_loss(trained)
    assert loss_after < loss_before - 0.3, (loss_before, loss_after)  # log(2N - 1) = 4.85 at chance
    assert acc_after > max(95.0, acc_before + 5.0), (acc_before, acc_after)
