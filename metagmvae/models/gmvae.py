"""Meta-GMVAE: a VAE whose prior is a per-episode Gaussian mixture fitted by EM.

One core serves both datasets; they differ only in the image encoder (Conv4 or identity on
cached features) and the decoder with its likelihood (Bernoulli on pixels or Gaussian on
features). Shapes: ``B`` episodes, ``M`` points per episode, ``S`` Monte-Carlo samples per
point, ``D`` latent size, ``d`` token width (256).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metagmvae.models import em
from metagmvae.models.set_encoder import SetEncoder


@dataclass
class Losses:
    """Per-step objective: ``loss = rec + kl`` (averaged over episodes, points and samples), and
    ``min_component``: the fewest Monte-Carlo samples any component of any episode's EM prior
    holds (:func:`metagmvae.models.em.component_sizes`; about 0 when a component emptied)."""

    loss: torch.Tensor
    rec: torch.Tensor
    kl: torch.Tensor
    min_component: torch.Tensor


class MetaGMVAE(nn.Module):
    """Encoder -> set encoder -> Gaussian posterior head; decoder with its own likelihood.

    Args:
        encoder: maps one input ``[N, *input_shape]`` to tokens ``[N, token_dim]``.
        decoder: maps ``[N, D]`` to a likelihood parameter; must provide
            ``nll(output, target) -> [N]`` (summed over pixels or features).
        token_dim: width d of the set encoder.
        latent: latent size D.
        heads, blocks: set-encoder heads and number of SABs.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        token_dim: int = 256,
        latent: int = 64,
        heads: int = 4,
        blocks: int = 2,
    ):
        super().__init__()
        self.encoder = encoder
        self.set_encoder = SetEncoder(token_dim, heads, blocks)
        self.head = nn.Linear(token_dim, 2 * latent)
        self.decoder = decoder
        self.latent = latent

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters of every point of every set.

        x: ``[B, M, *input_shape]`` -> ``(mean [B, M, D], log-variance [B, M, D])``, float32.
        """
        b, m = x.shape[:2]
        return self.posterior_from_tokens(self.encoder(x.flatten(0, 1)).view(b, m, -1))

    def posterior_from_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Set encoder and head on already-encoded points: ``[B, M, d]`` -> mean, log-variance ``[B, M, D]``.

        In eval mode the image encoder treats every image on its own (BatchNorm uses running
        statistics), so evaluation encodes each test image once and reuses its token in every
        episode that contains it; only this set-level part runs per episode.
        """
        stats = self.head(self.set_encoder(tokens)).float()
        return stats[..., : self.latent], stats[..., self.latent :]

    @staticmethod
    def sample(
        mean: torch.Tensor,
        logvar: torch.Tensor,
        samples: int,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised draws ``z = mean + exp(logvar / 2) * eps``, with ``eps`` drawn from
        ``generator`` unless given (standard normal ``[B, M, S, D]``).

        Returns ``(z [B, M, S, D], eps [B, M, S, D])``.
        """
        shape = (*mean.shape[:2], samples, mean.shape[-1])
        if eps is None:
            eps = torch.randn(shape, device=mean.device, generator=generator)
        elif eps.shape != shape:
            raise ValueError(f"noise of shape {tuple(eps.shape)} given, expected {shape}")
        return mean.unsqueeze(2) + (0.5 * logvar).exp().unsqueeze(2) * eps, eps

    def loss(
        self,
        x: torch.Tensor,
        *,
        components: int,
        samples: int,
        em_iters: int,
        samples_decoder: int | None = None,
        fix_pi: bool = False,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> Losses:
        """Negative ELBO of one meta-training batch (docs/official-code.md §3).

        x: ``[B, M, *input_shape]`` unlabeled episodes. Each point gets ``samples`` (S)
        reparameterised draws; the EM prior is fitted to all B x M x S of them and is a constant
        (no gradient through EM); the KL is the Monte-Carlo estimate ``log q(z) - log p(z)``
        averaged over all of them. The reconstruction term is averaged over the first
        ``samples_decoder`` (S_rec <= S, default S) draws of every point only: the draws are
        i.i.d., so this is an unbiased estimate of the same expectation at S_rec / S of the
        decoder's cost, and with S_rec = S it is exactly the official loss.
        noise: optional standard-normal draws ``[B, M, S, D]`` used instead of ``generator``.
        """
        b, m = x.shape[:2]
        s_rec = samples if samples_decoder is None else samples_decoder
        if not 0 < s_rec <= samples:
            raise ValueError(f"samples_decoder = {s_rec}: must be in [1, samples = {samples}]")
        mean, logvar = self.posterior(x)
        z, eps = self.sample(mean, logvar, samples, generator, noise)
        flat = z.view(b, m * samples, -1)
        pi, mu = em.unsupervised_em(flat, components, em_iters, generator, fix_pi)
        # log q at its own sample: (z - mean)^2 / var == eps^2 exactly.
        log_q = -0.5 * (em.LOG_2PI + logvar.unsqueeze(2) + eps.pow(2)).sum(-1)  # [B, M, S]
        log_p = em.gmm_log_density(flat, pi, mu).view(b, m, samples)
        kl = (log_q - log_p).mean()
        decoded = z if s_rec == samples else z[:, :, :s_rec]
        out = self.decoder(decoded.reshape(b * m * s_rec, -1))
        target = x.unsqueeze(2).expand(b, m, s_rec, *x.shape[2:]).reshape(b * m * s_rec, *x.shape[2:])
        rec = self.decoder.nll(out.float(), target).mean()
        smallest = em.component_sizes(flat, pi, mu).min()
        return Losses(loss=rec + kl, rec=rec, kl=kl, min_component=smallest)

    def encode(self, items: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Encoder tokens of class-structured items: ``[C, n, *input_shape] -> [C, n, d]``, no gradient.

        Call in eval mode (BatchNorm running statistics), under the caller's autocast.
        """
        flat = items.flatten(0, 1)
        with torch.no_grad():
            tokens = torch.cat([self.encoder(flat[i : i + chunk]).float() for i in range(0, len(flat), chunk)])
        return tokens.view(*items.shape[:2], -1)

    def predict(
        self, support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """``[E, W*Q]`` predicted labels: the argmax of :meth:`predict_proba` (same arguments)."""
        return self.predict_proba(support, support_labels, query, **kwargs).argmax(-1)

    def predict_proba(
        self,
        support: torch.Tensor,
        support_labels: torch.Tensor,
        query: torch.Tensor,
        *,
        way: int,
        samples: int,
        em_iters: int,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Transductive few-shot class posteriors with the semi-supervised EM (docs/official-code.md §4); no gradient.

        Args:
            support: ``[E, W*s, d]`` encoder tokens of the support images (see :meth:`encode`);
            support_labels: ``[E, W*s]`` in ``[0, way)``.
            query: ``[E, W*Q, d]`` encoder tokens of the queries.
            samples: S_test Monte-Carlo samples per point.
            noise: optional standard-normal draws ``[E, W*s + W*Q, S, D]`` used instead of
                drawing from ``generator`` (episodes then do not depend on their batch).

        Returns:
            ``[E, W*Q, W]`` class posteriors of every query, averaged over its S samples in
            probability space (the official prediction is their argmax).
        """
        n_sup, n_query = support.shape[1], query.shape[1]
        with torch.no_grad():
            mean, logvar = self.posterior_from_tokens(torch.cat([support, query], 1))
        z, _ = self.sample(mean, logvar, samples, generator, noise)  # [E, Ns + Nq, S, D]
        e, d = z.shape[0], z.shape[-1]
        z_sup = z[:, :n_sup].reshape(e, n_sup * samples, d)
        y_sup = support_labels.repeat_interleave(samples, dim=1)
        z_query = z[:, n_sup:].reshape(e, n_query * samples, d)
        probs = em.semi_supervised_em(z_sup, y_sup, z_query, way, em_iters)
        return probs.view(e, n_query, samples, way).mean(2)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
