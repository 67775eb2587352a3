"""Baselines: the batched logistic regression reaches each episode's own optimum; 1-NN."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from metagmvae.methods.baselines import fit_logistic_regression, logistic_regression, nearest_neighbour


def objective(w, b, x, y, c=1.0):
    logits = x @ w.T + b
    return c * F.cross_entropy(logits, y, reduction="sum") + 0.5 * w.pow(2).sum()


def test_batched_fit_reaches_every_episodes_optimum():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 15, 6, generator=gen, dtype=torch.float64)
    y = torch.arange(3).repeat_interleave(5).expand(4, 15)
    w, b = fit_logistic_regression(x, y, 3)
    for e in range(4):
        we, be = w[e].clone().requires_grad_(True), b[e].clone().requires_grad_(True)
        loss = objective(we, be, x[e], y[e])
        gw, gb = torch.autograd.grad(loss, (we, be))
        assert gw.abs().max() < 1e-5 and gb.abs().max() < 1e-5  # stationary: the convex optimum
        alone_w, alone_b = fit_logistic_regression(x[e : e + 1], y[e : e + 1], 3)
        assert torch.allclose(alone_w[0], w[e], atol=1e-5) and torch.allclose(alone_b[0], b[e], atol=1e-5)
    # the L2 penalty matters: a weaker C gives smaller weights
    w_small, _ = fit_logistic_regression(x, y, 3, c=0.01)
    assert w_small.norm() < 0.2 * w.norm()


def test_logistic_regression_standardises_with_training_statistics():
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 8, generator=gen) * 3
    train = centres[:, None] + torch.randn(5, 20, 8, generator=gen)
    # informative features at a tiny scale and a huge uninformative offset: under the L2
    # penalty (C = 1) the raw features cannot be used; standardised, they separate the classes
    scale = torch.full((8,), 1e-3)
    shift = torch.zeros(8)
    shift[0] = 1e4
    train = train * scale + shift
    support = train[:, :1].reshape(1, 5, 8)
    query = train[:, 1:].reshape(1, 95, 8)
    ys = torch.arange(5).view(1, 5)
    yq = torch.arange(5).repeat_interleave(19).view(1, 95)
    flat = train.flatten(0, 1).double()
    stats = (flat.mean(0).numpy(), flat.std(0, unbiased=False).numpy())
    pred = logistic_regression(lambda: stats)(support, ys, query, 5)
    assert (pred == yq).double().mean() > 0.7
    raw = logistic_regression(lambda: (np.zeros(8), np.ones(8)))(support, ys, query, 5)
    assert (raw == yq).double().mean() < 0.4  # without the statistics: near chance (0.2)
    loaded = []
    logistic_regression(lambda: loaded.append(1) or stats)
    assert loaded == [1]  # the statistics are read once, when the baseline is built


def test_nearest_neighbour_picks_the_closest_support_point():
    support = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])
    labels = torch.tensor([[2, 0, 1]])
    query = torch.tensor([[[1.0, 1.0], [9.0, 1.0], [1.0, 8.0], [6.0, 0.0]]])
    assert nearest_neighbour()(support, labels, query, 3).tolist() == [[2, 0, 1, 0]]


def test_nearest_neighbour_is_the_argmin_of_the_euclidean_distance():
    gen = torch.Generator().manual_seed(3)
    support = torch.randn(6, 10, 12, generator=gen) * torch.linspace(0.1, 3.0, 10).view(1, 10, 1)  # unequal norms
    labels = torch.randint(0, 5, (6, 10), generator=gen)
    query = torch.randn(6, 40, 12, generator=gen)
    want = torch.gather(labels, 1, torch.cdist(query.double(), support.double()).argmin(-1))
    assert torch.equal(nearest_neighbour()(support, labels, query, 5), want)


def test_logistic_regression_is_the_fit_on_standardised_features():
    """Predictions equal the argmax of W q + b with (W, b) fitted on the support features minus the
    training mean over the training std (a std of 0 left at 1), at the given C."""
    gen = torch.Generator().manual_seed(4)
    centres = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    support = (centres[:, None] + 0.5 * torch.randn(5, 2, 6, generator=gen, dtype=torch.float64)).reshape(1, 10, 6)
    query = (centres[:, None] + 0.5 * torch.randn(5, 8, 6, generator=gen, dtype=torch.float64)).reshape(1, 40, 6)
    support[..., 5] = query[..., 5] = 2.0  # a constant feature
    ys = torch.arange(5).repeat_interleave(2).view(1, 10)
    mean = torch.tensor([0.3, -0.2, 0.1, 0.5, -1.0, 2.0], dtype=torch.float64)
    std = torch.tensor([0.2, 0.5, 3.0, 1.5, 0.05, 0.0], dtype=torch.float64)  # below and above 1, and 0
    for c in (1.0, 0.05):
        pred = logistic_regression(lambda: (mean.numpy(), std.numpy()), c=c)(support, ys, query, 5)
        sd = torch.where(std > 0, std, torch.ones_like(std))
        w, b = fit_logistic_regression((support - mean) / sd, ys, 5, c=c)
        logits = ((query - mean) / sd) @ w.transpose(1, 2) + b.unsqueeze(1)
        assert torch.isfinite(logits).all()
        assert torch.equal(pred, logits.argmax(-1)), c
    default = logistic_regression(lambda: (mean.numpy(), std.numpy()))(support, ys, query, 5)
    assert torch.equal(default, logistic_regression(lambda: (mean.numpy(), std.numpy()), c=1.0)(support, ys, query, 5))
