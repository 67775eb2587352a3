"""EM against known mixtures and a plain (broadcasting, loop-free but unbatched) reference."""

import math

import numpy as np
import pytest
import torch

from metagmvae.models import em


def reference_unsupervised_em(z, mu, iters, fix_pi=False):
    """Textbook EM with identity covariances, one episode, explicit [N, K, D] differences."""
    k = mu.shape[0]
    pi = torch.full((k,), 1.0 / k, dtype=z.dtype)
    for _ in range(iters):
        d2 = ((z[:, None, :] - mu[None]) ** 2).sum(-1)
        r = torch.softmax(pi.log() - 0.5 * d2, dim=1)
        nk = r.sum(0)
        if not fix_pi:
            pi = nk / nk.sum()
        mu = (r.T @ z) / nk[:, None]
    return pi, mu


def reference_semi_supervised(zs, ys, zq, k, iters):
    """docs/official-code.md §4 written literally, one episode, float64."""
    mu = torch.stack([zs[ys == c].mean(0) for c in range(k)])
    onehot = torch.nn.functional.one_hot(ys, k).double()
    for _ in range(iters):
        r = torch.softmax(-0.5 * ((zq[:, None] - mu[None]) ** 2).sum(-1), dim=1)
        w = torch.cat([onehot, r])  # [L + U, K]
        x = torch.cat([zs, zq])
        n = w.sum(0)
        mu = (w.T @ x) / n[:, None]
        var = (w[:, :, None] * (x[:, None] - mu[None]) ** 2).sum(0) / n[:, None]
    logp = -0.5 * (var.log()[None] + (zq[:, None] - mu[None]) ** 2 / var[None]).sum(-1)
    return torch.softmax(logp, dim=1)


def well_separated_mixture(gen, e=3, n=3000, k=4, d=8):
    """Episodes drawn from K unit-variance Gaussians with means 12 apart and unequal weights."""
    means = 12.0 * torch.randn(e, k, d, generator=gen).sign()
    means = means + torch.arange(k).view(1, k, 1) * 10.0 * torch.eye(k, d).unsqueeze(0)
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4])
    labels = torch.multinomial(weights.expand(e, k), n, replacement=True, generator=gen)
    z = torch.gather(means, 1, labels.unsqueeze(-1).expand(e, n, d)) + torch.randn(e, n, d, generator=gen)
    return z, means, weights, labels


def test_recovers_means_and_weights_of_a_known_mixture():
    gen = torch.Generator().manual_seed(0)
    z, means, weights, labels = well_separated_mixture(gen)
    # Initialise from one point of each component (a random init can merge two components).
    best = None
    for seed in range(20):
        pi, mu = em.unsupervised_em(z, 4, iters=20, generator=torch.Generator().manual_seed(seed))
        # match components to true means
        order = torch.cdist(mu, means).argmin(-1)  # [E, K] true index of each fitted component
        if all(len(set(o.tolist())) == 4 for o in order):
            best = (pi, mu, order)
            break
    assert best is not None, "no initialisation separated the four components"
    pi, mu, order = best
    for e in range(z.shape[0]):
        fitted_mu = torch.empty_like(mu[e])
        fitted_mu[order[e]] = mu[e]
        fitted_pi = torch.empty_like(pi[e])
        fitted_pi[order[e]] = pi[e]
        empirical = torch.bincount(labels[e], minlength=4).float() / labels.shape[1]
        assert torch.allclose(fitted_pi, empirical, atol=1e-3)
        assert torch.allclose(fitted_pi, weights, atol=0.03)
        # Separated by > 10 sd: EM's means are the per-component sample means...
        sample_means = torch.stack([z[e][labels[e] == c].mean(0) for c in range(4)])
        assert torch.allclose(fitted_mu, sample_means, atol=1e-3)
        # ...which are within sampling noise (sd sqrt(1 / n_k) per coordinate) of the true means.
        assert (fitted_mu - means[e]).abs().max() < 0.3


@pytest.mark.parametrize("fix_pi", [False, True])
def test_batched_em_matches_plain_reference(monkeypatch, fix_pi):
    """From initial points the test chooses itself (not the module's own draw), batched EM with
    free or fixed mixing weights equals the textbook EM of each episode."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(4, 500, 16, generator=gen) * 3
    chosen = torch.stack([torch.from_numpy(np.random.default_rng(e).choice(500, 5, replace=False)) for e in range(4)])
    draws = []

    def chosen_points(n_points, k, batch, device, generator):
        draws.append((n_points, k, batch, generator))
        return chosen

    monkeypatch.setattr(em, "random_init_indices", chosen_points)
    seeded = torch.Generator().manual_seed(7)
    pi, mu = em.unsupervised_em(z, 5, iters=10, generator=seeded, fix_pi=fix_pi)
    assert draws == [(500, 5, 4, seeded)]  # K starts per episode, from the caller's generator
    for e in range(4):
        ref_pi, ref_mu = reference_unsupervised_em(z[e].double(), z[e, chosen[e]].double(), 10, fix_pi)
        assert torch.allclose(pi[e].double(), ref_pi, atol=1e-4)
        assert torch.allclose(mu[e].double(), ref_mu, atol=1e-4)
    if fix_pi:
        assert torch.equal(pi, torch.full((4, 5), 0.2))
    else:  # re-estimated, the weights of the components of this unstructured cloud differ
        assert (pi - 0.2).abs().max() > 0.05


def test_fixed_weights_change_the_fitted_means_of_an_unbalanced_mixture():
    """fix_pi keeps pi uniform during EM: on a 90 / 10 mixture of overlapping components the
    uniform prior pulls points towards the small component, so its mean moves."""
    gen = torch.Generator().manual_seed(5)
    big, small = torch.randn(1, 900, 2, generator=gen), torch.randn(1, 100, 2, generator=gen) + 2.0
    z = torch.cat([big, small], 1)
    init = torch.Generator().manual_seed(0)
    free_pi, free_mu = em.unsupervised_em(z, 2, iters=30, generator=init)
    fixed_pi, fixed_mu = em.unsupervised_em(z, 2, iters=30, generator=torch.Generator().manual_seed(0), fix_pi=True)
    assert torch.equal(fixed_pi, torch.full((1, 2), 0.5)) and not torch.allclose(free_pi, fixed_pi, atol=0.05)
    assert (free_mu - fixed_mu).abs().max() > 0.1


def test_initial_indices_are_uniform_over_the_points_and_follow_the_generator():
    idx = em.random_init_indices(6, 3, 20_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    counts = torch.bincount(idx.flatten(), minlength=6).double()
    # each point starts a component in half of the rows: 10,000 +- 71 (binomial sd) per point
    assert ((counts - 10_000).abs() < 5 * 71).all(), counts
    again = em.random_init_indices(6, 3, 20_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    other = em.random_init_indices(6, 3, 20_000, torch.device("cpu"), torch.Generator().manual_seed(1))
    assert torch.equal(idx, again) and not torch.equal(idx, other)


def test_initial_means_are_distinct_points():
    idx = em.random_init_indices(50, 20, 30, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert idx.shape == (30, 20)
    assert all(len(set(row.tolist())) == 20 for row in idx)
    assert idx.min() >= 0 and idx.max() < 50


def test_gmm_log_density_matches_direct_formula():
    gen = torch.Generator().manual_seed(2)
    z, mu = torch.randn(2, 30, 6, generator=gen), torch.randn(2, 3, 6, generator=gen)
    pi = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    got = em.gmm_log_density(z, pi, mu)
    comp = -0.5 * ((z[:, :, None] - mu[:, None]) ** 2).sum(-1) - 3 * math.log(2 * math.pi)
    want = torch.logsumexp(pi.log()[:, None] + comp, -1)
    assert torch.allclose(got, want, atol=1e-4)


def test_gradient_flows_through_z_only():
    z = torch.randn(1, 40, 4, requires_grad=True)
    pi, mu = em.unsupervised_em(z, 3, 5, torch.Generator().manual_seed(0))
    assert not pi.requires_grad and not mu.requires_grad
    em.gmm_log_density(z, pi, mu).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_semi_supervised_em_matches_reference():
    gen = torch.Generator().manual_seed(3)
    k, d = 5, 8
    centres = torch.randn(k, d, generator=gen) * 2
    ys = torch.arange(k).repeat_interleave(4)
    zs = centres[ys] + torch.randn(len(ys), d, generator=gen)
    yq = torch.arange(k).repeat_interleave(15)
    zq = centres[yq] + torch.randn(len(yq), d, generator=gen)
    got = em.semi_supervised_em(zs[None] + 50.0, ys[None], zq[None] + 50.0, k, iters=10)[0]
    want = reference_semi_supervised(zs.double(), ys, zq.double(), k, 10)
    assert torch.allclose(got.double(), want, atol=1e-4)
    assert (got.argmax(-1) == yq).float().mean() > 0.8


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_semi_supervised_em_is_finite_for_degenerate_inputs(scale):
    # Duplicate points (zero variance) at any magnitude, and a class no query belongs to.
    zs = torch.tensor([[[1.0, 2.0], [1.0, 2.0], [5.0, 5.0], [5.0, 5.0], [-3.0, 0.0], [-3.0, 0.0]]]) * scale
    ys = torch.tensor([[0, 0, 1, 1, 2, 2]])
    zq = torch.tensor([[[1.0, 2.0], [1.0, 2.0], [5.0, 5.0]]]) * scale
    probs = em.semi_supervised_em(zs, ys, zq, 3, iters=10)
    assert torch.isfinite(probs).all()
    assert probs.argmax(-1).tolist() == [[0, 0, 1]]


def test_em_stays_float32_under_bf16_autocast():
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(2, 300, 64, generator=gen) * 4 + 20
    pi, mu = em.unsupervised_em(z, 5, 10, torch.Generator().manual_seed(0))
    logp = em.gmm_log_density(z, pi, mu)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pi_ac, mu_ac = em.unsupervised_em(z, 5, 10, torch.Generator().manual_seed(0))
        logp_ac = em.gmm_log_density(z, pi_ac, mu_ac)
    assert mu_ac.dtype == logp_ac.dtype == torch.float32
    assert torch.equal(pi, pi_ac) and torch.equal(mu, mu_ac) and torch.equal(logp, logp_ac)


def test_diagonal_posterior_is_the_gaussian_posterior_also_at_a_component_mean():
    """At z = mu_0 (Mahalanobis distance 0 to it, under 1 to the others) the posterior is the
    direct one: softmax_k of the diagonal Gaussian log densities (uniform weights)."""
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(1, 3, 4, generator=gen) * 0.3
    var = 1.0 + torch.rand(1, 3, 4, generator=gen) * 3
    z = torch.cat([mu[:, :1], mu[:, :1] + 0.1], dim=1)  # [1, 2, 4]
    direct = torch.distributions.Normal(mu[:, None], var[:, None].sqrt()).log_prob(z[:, :, None]).sum(-1).softmax(-1)
    assert torch.allclose(em.diagonal_gaussian_posterior(z, mu, var), direct, atol=1e-6)


def test_semi_supervised_em_refuses_zero_iterations():
    z = torch.randn(1, 4, 2)
    with pytest.raises(ValueError, match="semi-supervised EM needs at least one iteration, got 0"):
        em.semi_supervised_em(z, torch.tensor([[0, 0, 1, 1]]), z, 2, 0)


def test_component_sizes_count_the_points_each_component_holds_and_an_emptied_one_holds_none():
    gen = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(1, 30, 4, generator=gen) - 5.0, torch.randn(1, 10, 4, generator=gen) + 5.0], 1)
    pi = torch.tensor([[0.5, 0.3, 0.2]])
    mu = torch.tensor([[[-5.0] * 4, [5.0] * 4, [500.0] * 4]])  # the third is far from every point
    sizes = em.component_sizes(z, pi, mu)
    assert sizes.shape == (1, 3)
    torch.testing.assert_close(sizes, torch.tensor([[30.0, 10.0, 0.0]]), atol=1e-3, rtol=0)
    emptied = em.component_sizes(z, torch.tensor([[0.6, 0.4, 0.0]]), mu)  # pi_k = 0: the EPS floor
    assert torch.isfinite(emptied).all() and emptied[0, 2] < 1e-6 and float(emptied.sum()) == pytest.approx(40.0)
