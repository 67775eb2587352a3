"""SIB: cosine classifier and initialization by hand, the synthetic gradient step against its closed
form, class equivariance, meta-training that makes the synthetic steps useful, and a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import related_config, related_section
from torch.nn import functional as F

from metagmvae.config import ConfigError
from metagmvae.data.episodes import EpisodeSet, gather, sample_episodes
from metagmvae.evaluate import episode_accuracies
from metagmvae.related import sib
from metagmvae.runtime import Runtime
from metagmvae.tracking import Run
from metagmvae.validate import parse_section

CPU = Runtime(torch.device("cpu"), "fp32", channels_last=False)


def model(features: int = 2, **overrides) -> sib.SIB:
    cfg = related_config("sib_mini_imagenet", "paper", **overrides)
    torch.manual_seed(0)
    return sib.build_model(cfg, features)


def test_cosine_logits_by_hand():
    query = torch.tensor([[[3.0, 4.0], [0.0, -1.0]]])  # [1, 2, 2]
    theta = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # classes along x and y
    logits = sib.cosine_logits(query, theta, torch.tensor(2.0))
    # cos([3, 4], x) = 3/5, cos([3, 4], y) = 4/5; cos([0, -1], x) = 0, cos([0, -1], y) = -1; times 2
    assert torch.allclose(logits, torch.tensor([[[1.2, 1.6], [0.0, -2.0]]]))


@pytest.mark.parametrize("normalize, expected", [(True, [[1.2, 0.8], [0.0, 1.0]]), (False, [[9.0, 6.0], [0.0, 2.0]])])
def test_init_theta_is_the_weighted_class_mean(normalize, expected):
    net = model(normalize=normalize)
    with torch.no_grad():
        net.init_weight.copy_(torch.tensor([2.0, 1.0]))
    support = torch.tensor([[[3.0, 4.0], [0.0, 2.0], [6.0, 8.0]]])
    labels = torch.tensor([[0, 1, 0]])
    # normalised: class 0 = mean([.6, .8], [.6, .8]), class 1 = [0, 1]; raw: mean([3, 4], [6, 8]), [0, 2]
    assert torch.allclose(net.init_theta(support, labels, 2), torch.tensor([expected]))


def test_synthetic_gradient_step_matches_its_closed_form():
    """One step: theta_k <- theta_k - lr * sum_n g_nk * d(s cos(q_n, theta_k))/d theta_k, with
    d cos(q, t)/dt = (q/|q| - cos * t/|t|) / |t|."""
    net = model(theta_steps=1, lr_theta=0.1, scale=3.0)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(2, 4, 2, generator=gen)  # E=2 episodes, W=4 classes
    query = torch.randn(2, 7, 2, generator=gen)  # N=7 queries
    with torch.no_grad():
        g = net.dni(sib.cosine_logits(query, theta, net.scale))
        refined = net.refine(theta, query)
    assert g.shape == (2, 7, 4) and refined.shape == theta.shape and not refined.requires_grad
    q_hat, t_hat = F.normalize(query, dim=-1), F.normalize(theta, dim=-1)
    cos = q_hat @ t_hat.transpose(1, 2)  # [E, N, W]
    dcos = (q_hat.unsqueeze(2) - cos.unsqueeze(-1) * t_hat.unsqueeze(1)) / theta.norm(dim=-1)[:, None, :, None]
    expected = theta - 0.1 * 3.0 * (g.unsqueeze(-1) * dcos).sum(1)
    assert torch.allclose(refined, expected, atol=1e-5)
    assert (refined - theta).abs().max() > 1e-3  # the step did move theta


def test_synthetic_gradient_is_class_equivariant_for_any_way_and_per_episode():
    net = model()
    gen = torch.Generator().manual_seed(1)
    for way in (2, 5, 9):
        logits = torch.randn(3, 11, way, generator=gen)
        perm = torch.randperm(way, generator=gen)
        with torch.no_grad():
            out = net.dni(logits)
            assert out.shape == (3, 11, way)
            assert torch.allclose(net.dni(logits[..., perm]), out[..., perm], atol=1e-5)
            assert torch.allclose(net.dni(logits[1:2]), out[1:2], atol=1e-5)  # no statistics across episodes


def clustered(classes: int, per_class: int, features: int, noise: float, seed: int) -> torch.Tensor:
    """``[classes, per_class, features]``: Gaussian clusters around random unit centres."""
    gen = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, 1, features, generator=gen), dim=-1)
    return centres + noise * torch.randn(classes, per_class, features, generator=gen) / features**0.5


def query_losses(net: sib.SIB, data: torch.Tensor, episodes: EpisodeSet) -> tuple[float, float]:
    """Query cross-entropy with theta_0 and with theta_K (K synthetic gradient steps)."""
    support, y_support, query, y_query = gather(data, episodes)
    with torch.no_grad():
        theta0 = net.init_theta(support, y_support, episodes.way)
        return tuple(
            F.cross_entropy(sib.cosine_logits(query, theta, net.scale).flatten(0, 1), y_query.flatten()).item()
            for theta in (theta0, net.refine(theta0, query))
        )


def test_meta_training_makes_the_synthetic_steps_lower_the_query_loss():
    """Noisy 1-shot prototypes of well-separated clusters: the queries say where the classes are.
    Untrained, the synthetic steps do not help; after 60 meta-training steps theta_K fits held-out
    episodes far better than theta_0 (measured: query cross-entropy 0.45 -> 0.10)."""
    train_data, test_data = clustered(40, 30, 16, 1.0, seed=0), clustered(20, 30, 16, 1.0, seed=1)
    held_out = sample_episodes(np.random.default_rng(1), 100, 20, 30, 5, 1, 15)
    net = model(16)
    loss0, loss_k = query_losses(net, test_data, held_out)
    assert loss_k > 0.8 * loss0, (loss0, loss_k)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    rng = np.random.default_rng(0)
    for _ in range(60):
        support, y_support, query, y_query = gather(train_data, sample_episodes(rng, 4, 40, 30, 5, 1, 15))
        loss = F.cross_entropy(net(support, y_support, query, 5).flatten(0, 1), y_query.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loss0, loss_k = query_losses(net, test_data, held_out)
    assert loss_k < 0.5 * loss0, (loss0, loss_k)


def test_sections_parse_and_bad_or_unknown_keys_are_refused():
    assert related_config("sib_mini_imagenet").optimizer == "adam"
    assert related_config("sib_mini_imagenet", "paper").optimizer == "sgd"
    with pytest.raises(ConfigError, match=r"related\.sib_mini_imagenet\.lr = -1\.0: must be > 0$"):
        related_config("sib_mini_imagenet", lr=-1.0)
    with pytest.raises(ConfigError, match=r"related\.sib_mini_imagenet\.optimizer = 'rmsprop': must be one of"):
        related_config("sib_mini_imagenet", optimizer="rmsprop")
    with pytest.raises(ConfigError, match=r"related\.sib_mini_imagenet: unknown key\(s\) \['typo'\]"):
        related_config("sib_mini_imagenet", typo=1)
    with pytest.raises(ConfigError, match=r"related\.sib_mini_imagenet: momentum = 0\.0: Nesterov SGD needs"):
        related_config("sib_mini_imagenet", "paper", momentum=0.0)
    section = {k: v for k, v in related_section("sib_mini_imagenet").items() if k != "way"}
    with pytest.raises(ConfigError, match=r"^related\.sib_mini_imagenet\.way: missing$"):
        parse_section({"related": {"sib_mini_imagenet": section}}, "related", "sib_mini_imagenet")


def test_tiny_training_is_deterministic_and_beats_chance(tmp_path):
    data = clustered(30, 25, 12, 0.6, seed=2)
    splits = {"train": data[:20], "val": data[20:]}
    val = sample_episodes(np.random.default_rng(3), 10, 10, 25, 5, 1, 15)
    cfg = related_config("sib_mini_imagenet", steps=30, val_every=10, log_every=10, batch=4)
    logged = []

    class Recorder(Run):
        def log_metrics(self, metrics, step=None):
            logged.append((step, dict(metrics)))

    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    threads = torch.get_num_threads()
    summary = sib.train(cfg, CPU, splits, val, first, Recorder(), progress=False)
    assert torch.get_num_threads() == threads  # restored after the one-thread training loop
    sib.train(cfg, CPU, splits, val, second, Run(None), progress=False)
    assert first.read_bytes() == second.read_bytes()
    assert summary["steps"] == 30 and 0 <= summary["best_val_accuracy"] <= 100
    assert [s for s, m in logged if "train/loss" in m] == [10, 20, 30]
    assert [s for s, m in logged if "val/accuracy" in m] == [10, 20, 30]

    predict = sib.predictor(first, CPU)
    for way, shot in ((5, 1), (3, 5)):  # any way and shot
        test = sample_episodes(np.random.default_rng(way), 50, 10, 25, way, shot, 5)
        accuracy = episode_accuracies(predict, splits["val"], test, 20).mean()
        assert accuracy > 2.5 / way, (way, shot, accuracy)
