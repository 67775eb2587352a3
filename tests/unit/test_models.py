"""Networks: sizes from the spec, SAB semantics, the objective and prediction."""

import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from metagmvae.models import MetaGMVAE, build_model, em
from metagmvae.models.gmvae import parameter_count
from metagmvae.models.set_encoder import SelfAttentionBlock

PIXELS = {"kind": "pixels", "latent": 64, "hidden": 64, "heads": 4, "blocks": 2}


def test_parameter_counts_match_the_official_model():
    model = build_model(PIXELS)
    assert parameter_count(model) == 988_929
    assert parameter_count(model.encoder) == 111_936
    assert parameter_count(model.set_encoder) == 526_336
    assert parameter_count(model.head) == 32_896
    assert parameter_count(model.decoder) == 148_224 + 169_537


FEATURES = {"kind": "features", "input_dim": 256, "latent": 32, "hidden": 512, "heads": 4, "blocks": 2}


def test_feature_model_matches_the_official_mini_imagenet_model():
    model = build_model(FEATURES)
    assert parameter_count(model) == 953_664  # set encoder 526,336 + head 16,448 + decoder 410,880
    assert parameter_count(model.encoder) == 0  # the cached features are the tokens
    assert parameter_count(model.decoder) == 32 * 512 + 512 + 512 * 512 + 512 + 512 * 256 + 256
    out = model.decoder(torch.randn(4, 32))
    assert out.shape == (4, 256) and (out >= 0).all()  # final ReLU: non-negative like the features
    target = torch.rand(4, 256)
    assert torch.allclose(model.decoder.nll(out, target), (out - target).pow(2).sum(-1))
    losses = model.loss(torch.rand(2, 5, 256), components=5, samples=3, em_iters=2)
    assert torch.isfinite(losses.loss) and losses.rec > 0


def test_encoder_and_decoder_shapes():
    model = build_model(PIXELS)
    assert model.encoder(torch.rand(3, 1, 28, 28)).shape == (3, 256)
    assert model.decoder(torch.randn(3, 64)).shape == (3, 1, 28, 28)


def test_sab_is_the_set_transformer_block():
    torch.manual_seed(0)
    sab = SelfAttentionBlock(8, heads=2)
    x = torch.randn(2, 5, 8)
    q, k, v = sab.to_q(x), sab.to_k(x), sab.to_v(x)
    heads = []
    for h in range(2):  # per head: softmax(Q K^T / sqrt(d_model)) V plus the projected queries
        qh, kh, vh = (t[..., 4 * h : 4 * h + 4] for t in (q, k, v))
        heads.append(qh + torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(8), -1) @ vh)
    o = torch.cat(heads, -1)
    want = o + torch.relu(sab.ff(o))
    assert torch.allclose(sab(x), want, atol=1e-5)


def test_set_encoder_is_permutation_equivariant():
    model = build_model(PIXELS)
    x = torch.randn(2, 7, 256)
    perm = torch.randperm(7)
    assert torch.allclose(model.set_encoder(x)[:, perm], model.set_encoder(x[:, perm]), atol=1e-5)


def test_loss_terms_and_gradients():
    torch.manual_seed(0)
    model = build_model(PIXELS)
    x = torch.rand(2, 10, 1, 28, 28)
    losses = model.loss(x, components=3, samples=4, em_iters=3, generator=torch.Generator().manual_seed(0))
    assert torch.isclose(losses.loss, losses.rec + losses.kl)
    # Reconstruction is summed over 784 pixels per sample: for near-uniform outputs ~ 784 * log 2.
    assert 300 < losses.rec.item() < 800
    losses.loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def independent_posterior(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of q(z | x, set), float64, from the networks themselves: the
    head's first ``latent`` outputs are the mean, the rest the log-variance."""
    b, m = x.shape[:2]
    with torch.no_grad():
        stats = model.head(model.set_encoder(model.encoder(x.flatten(0, 1)).view(b, m, -1))).double()
    return stats[..., : model.latent], (0.5 * stats[..., model.latent :]).exp()


@pytest.mark.parametrize("samples_decoder", [3, 2, 1])
def test_kl_and_reconstruction_equal_an_independent_computation_at_fixed_noise(monkeypatch, samples_decoder):
    """At fixed noise and a fixed EM prior, the loss terms equal torch.distributions' densities:
    KL = mean over all B x M x S draws of log q(z | x) - log sum_k pi_k N(z; mu_k, I), and the
    reconstruction the Bernoulli NLL of the first S_rec draws of every point."""
    torch.manual_seed(0)
    model = build_model(PIXELS).eval()  # BatchNorm running statistics: the same posterior on every call
    gen = torch.Generator().manual_seed(1)
    b, m, s, k = 2, 6, 3, 3
    x = (torch.rand(b, m, 1, 28, 28, generator=gen) > 0.7).float()
    noise = torch.randn(b, m, s, 64, generator=gen)
    pi = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    mu = 0.5 * torch.randn(b, k, 64, generator=gen)
    fitted = []

    def fixed_prior(z, components, iters, generator, fix_pi):
        fitted.append((tuple(z.shape), components, iters, fix_pi))
        return pi, mu

    monkeypatch.setattr(em, "unsupervised_em", fixed_prior)
    losses = model.loss(x, components=k, samples=s, samples_decoder=samples_decoder, em_iters=4, noise=noise)
    assert fitted == [((b, m * s, 64), k, 4, False)]  # the prior is fitted to every draw of every point

    mean, std = independent_posterior(model, x)
    z = mean.unsqueeze(2) + std.unsqueeze(2) * noise.double()  # [B, M, S, D]
    log_q = Normal(mean.unsqueeze(2), std.unsqueeze(2)).log_prob(z).sum(-1)
    log_components = Normal(mu.double()[:, None, None], 1.0).log_prob(z.unsqueeze(3)).sum(-1)  # [B, M, S, K]
    log_p = torch.logsumexp(pi.double().log()[:, None, None] + log_components, -1)
    kl = (log_q - log_p).mean()
    assert kl > 5  # far from 0 (7.4 here): a sign error cannot hide
    assert losses.kl.item() == pytest.approx(kl.item(), rel=1e-5)

    decoded = z[:, :, :samples_decoder].reshape(-1, 64).float()
    with torch.no_grad():
        logits = model.decoder(decoded).double()
    target = x.unsqueeze(2).expand(b, m, samples_decoder, 1, 28, 28).reshape(-1, 1, 28, 28).double()
    rec = -Bernoulli(logits=logits).log_prob(target).flatten(1).sum(1).mean()
    assert losses.rec.item() == pytest.approx(rec.item(), rel=1e-5)
    assert losses.loss.item() == pytest.approx(rec.item() + kl.item(), rel=1e-5)


@pytest.mark.parametrize("samples_decoder", [0, 4])
def test_more_decoder_samples_than_drawn_or_none_are_refused(samples_decoder):
    model = build_model(FEATURES)
    with pytest.raises(ValueError, match=f"samples_decoder = {samples_decoder}: must be in \\[1, samples = 3\\]"):
        model.loss(torch.rand(1, 5, 256), components=2, samples=3, samples_decoder=samples_decoder, em_iters=1)


def test_the_generator_alone_decides_the_draws_and_the_em_start():
    """Same generator seed, same loss (the global RNG is not used: it is advanced between the
    calls); another seed, another loss."""
    torch.manual_seed(0)
    model = build_model(FEATURES)
    x = torch.rand(2, 6, 256, generator=torch.Generator().manual_seed(3))

    def loss(seed: int) -> float:
        torch.rand(7)  # moves the global RNG
        gen = torch.Generator().manual_seed(seed)
        return model.loss(x, components=3, samples=4, em_iters=3, generator=gen).loss.item()

    assert loss(5) == loss(5) != loss(6)


def test_draws_are_mean_plus_standard_deviation_times_the_noise():
    mean, noise = torch.zeros(2, 5, 4), torch.randn(2, 5, 3, 4)
    z, eps = MetaGMVAE.sample(mean + 1.0, torch.full_like(mean, math.log(4.0)), 3, eps=noise)
    assert eps is noise and torch.allclose(z, 1.0 + 2.0 * noise)  # mean + exp(logvar / 2) * eps
    z, eps = MetaGMVAE.sample(mean, mean, 3, generator=torch.Generator().manual_seed(0))
    assert z.shape == (2, 5, 3, 4) and torch.equal(z, eps)
    assert torch.equal(eps, torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=r"noise of shape \(2, 5, 2, 4\) given, expected \(2, 5, 3, 4\)"):
        MetaGMVAE.sample(mean, mean, 3, eps=torch.randn(2, 5, 2, 4))


def test_prediction_recovers_well_separated_classes():
    """With posteriors that are exact copies of the inputs, the transductive EM classifies them."""
    torch.manual_seed(0)
    model = build_model({**PIXELS, "latent": 4})
    centres = torch.randn(3, 4) * 5

    def posterior_from_tokens(x):  # bypass the networks: x already holds latent codes [E, N, 4]
        return x, torch.full_like(x, -6.0)

    model.posterior_from_tokens = posterior_from_tokens
    y_support = torch.tensor([[0, 1, 2]])
    support = centres[y_support]
    y_query = torch.arange(3).repeat_interleave(5).unsqueeze(0)
    query = centres[y_query] + 0.3 * torch.randn(1, 15, 4)
    pred = model.predict(
        support, y_support, query, way=3, samples=8, em_iters=10, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(pred, y_query)


@pytest.mark.parametrize("bad", [{"kind": "conv9"}])
def test_unknown_model_kind(bad):
    with pytest.raises(ValueError, match=r"^model.kind = 'conv9': must be one of \['pixels', 'features'\]$"):
        build_model({**PIXELS, **bad})


def test_cached_tokens_equal_per_episode_encoding_in_eval_mode():
    """Evaluation encodes each image once; in eval mode that equals encoding every episode's set."""
    from metagmvae.data import episodes as ep

    torch.manual_seed(0)
    model = build_model(PIXELS)
    model.train()
    model.loss(
        torch.rand(1, 30, 1, 28, 28), components=5, samples=2, em_iters=2
    )  # move the BatchNorm running statistics
    model.eval()
    data = torch.rand(8, 20, 1, 28, 28)
    eps = ep.sample_episodes(ep.episode_rng(0, "test", 5, 1), 3, 8, 20, 5, 1, 15)
    support, _, query, _ = ep.gather(data, eps)
    cached_support, _, cached_query, _ = ep.gather(model.encode(data, chunk=7), eps)
    with torch.no_grad():
        direct = model.encoder(torch.cat([support, query], 1).flatten(0, 1)).view(3, 80, -1)
    assert torch.allclose(torch.cat([cached_support, cached_query], 1), direct, atol=1e-5)
