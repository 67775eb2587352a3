"""Batched EM for the per-episode Gaussian-mixture prior (pure tensor functions).

Shapes: ``E`` episodes, ``N`` points per episode (Monte-Carlo samples, each its own point),
``K`` components, ``D`` latent dimensions. Everything here runs in float32 whatever the
caller's autocast state: squared distances in D = 64 are hundreds of nats, which bf16 would
quantise badly.

Deviations from the official code (docs/official-code.md §7.2), all inert in normal runs:
``N_k`` is floored at ``EPS`` before dividing, ``log pi`` at ``log(EPS)``, and the test-time
variances are computed around a per-episode centre and floored at ``var_floor``.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-12
LOG_2PI = math.log(2.0 * math.pi)


def squared_distances(z: torch.Tensor, mu: torch.Tensor, z_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``||z_n - mu_k||^2`` as a batched matmul: z ``[E, N, D]``, mu ``[E, K, D]`` -> ``[E, N, K]``.

    No ``[E, N, K, D]`` tensor is materialised. Differentiable in ``z``. ``z_sq`` (``[E, N, 1]``,
    ``||z_n||^2``) may be passed in when ``z`` is fixed across EM iterations.
    """
    zz = z.pow(2).sum(-1, keepdim=True) if z_sq is None else z_sq
    mm = mu.pow(2).sum(-1).unsqueeze(1)
    return (zz - 2.0 * torch.bmm(z, mu.transpose(1, 2)) + mm).clamp_min(0.0)


def _fp32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.float() for t in tensors]


def full_precision(device: torch.device) -> torch.autocast:
    """A context with autocast disabled on ``device``: float32 inputs stay float32 inside matmuls
    even when the caller autocasts to bfloat16.

    Entered inside each function rather than applied as a decorator: mutation testing
    (``scripts/mutation.sh``) cannot mutate decorated functions."""
    return torch.autocast(device.type, enabled=False)


def random_init_indices(
    n_points: int, k: int, batch: int, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """``[batch, k]`` distinct indices in ``[0, n_points)`` per row, drawn on ``device``
    (top-k of uniform noise: a uniform draw without replacement, no host loop)."""
    noise = torch.rand(batch, n_points, device=device, generator=generator)
    return noise.topk(k, dim=1).indices


def unsupervised_em(
    z: torch.Tensor,
    k: int,
    iters: int,
    generator: torch.Generator | None = None,
    fix_pi: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit a K-component, identity-covariance GMM to every episode of ``z`` (meta-training EM).

    Args:
        z: ``[E, N, D]`` points (detached here; the result is a constant for the loss).
        k: number of components K.
        iters: EM iterations T_u.
        generator: RNG for the initial means (K distinct points per episode).
        fix_pi: keep the mixing weights uniform instead of re-estimating them.

    Returns:
        ``(pi [E, K], mu [E, K, D])``, float32.
    """
    with torch.no_grad(), full_precision(z.device):
        (z,) = _fp32(z.detach())
        e, n, d = z.shape
        idx = random_init_indices(n, k, e, z.device, generator)
        mu = torch.gather(z, 1, idx.unsqueeze(-1).expand(e, k, d))
        pi = torch.full((e, k), 1.0 / k, device=z.device)
        z_sq = z.pow(2).sum(-1, keepdim=True)
        for _ in range(iters):
            logits = pi.clamp_min(EPS).log().unsqueeze(1) - 0.5 * squared_distances(z, mu, z_sq)
            resp = logits.softmax(-1)  # [E, N, K]
            nk = resp.sum(1)  # [E, K]
            if not fix_pi:
                pi = nk / nk.sum(-1, keepdim=True)
            mu = torch.bmm(resp.transpose(1, 2), z) / nk.clamp_min(EPS).unsqueeze(-1)
        return pi, mu


def component_sizes(z: torch.Tensor, pi: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """How many of the points ``z`` ``[E, N, D]`` each fitted component holds: the responsibilities
    under ``(pi [E, K], mu [E, K, D])`` summed over the points, ``[E, K]`` (each row sums to N).

    A component that lost all its points during EM (where the official code would divide 0 by 0
    and the ``EPS`` floors above keep it finite) holds about 0; the training loop logs the
    smallest size per step so that this is seen, not silent."""
    with torch.no_grad(), full_precision(z.device):
        z, pi, mu = _fp32(z.detach(), pi, mu)
        return (pi.clamp_min(EPS).log().unsqueeze(1) - 0.5 * squared_distances(z, mu)).softmax(-1).sum(1)


def gmm_log_density(z: torch.Tensor, pi: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """``log sum_k pi_k N(z; mu_k, I)``: z ``[E, N, D]``, pi ``[E, K]``, mu ``[E, K, D]`` -> ``[E, N]``.

    Differentiable in ``z`` (pi and mu are constants from EM). Computed in float32.
    """
    with full_precision(z.device):
        z, pi, mu = _fp32(z, pi, mu)
        d = z.shape[-1]
        logits = pi.clamp_min(EPS).log().unsqueeze(1) - 0.5 * squared_distances(z, mu)
        return torch.logsumexp(logits, dim=-1) - 0.5 * d * LOG_2PI


def semi_supervised_em(
    z_support: torch.Tensor,
    y_support: torch.Tensor,
    z_query: torch.Tensor,
    k: int,
    iters: int,
    var_floor: float = 1e-6,
) -> torch.Tensor:
    """Transductive test-time EM (docs/official-code.md §4) and the final query posteriors.

    Uniform, fixed pi; means start at the labelled class means; E-steps over the unlabelled
    points use the identity covariance; after the last M-step the diagonal variances give the
    final posterior ``p(k | z_query)``.

    Args:
        z_support: ``[E, L, D]`` labelled points (all MC samples of every support image).
        y_support: ``[E, L]`` int labels in ``[0, k)``.
        z_query: ``[E, U, D]`` unlabelled points (all MC samples of every query).
        k: number of classes (way).
        iters: EM iterations T_s.
        var_floor: lower bound on each variance (deviation; never active in normal runs).

    Returns:
        ``[E, U, K]`` float32 posteriors of every query point.
    """
    with torch.no_grad(), full_precision(z_support.device):
        z_support, z_query = _fp32(z_support, z_query)
        # Centre each episode: variances and distances below use expanded sums of squares, whose
        # cancellation error scales with |z|^2; centring keeps it at the scale of the spread.
        centre = z_support.mean(1, keepdim=True)
        z_support, z_query = z_support - centre, z_query - centre
        onehot = torch.nn.functional.one_hot(y_support, k).to(z_support.dtype)  # [E, L, K]
        n_lab = onehot.sum(1)  # [E, K]
        sum_lab = torch.bmm(onehot.transpose(1, 2), z_support)  # [E, K, D]
        mu = sum_lab / n_lab.unsqueeze(-1)
        log_pi = -math.log(k)
        if iters < 1:
            raise ValueError(f"semi-supervised EM needs at least one iteration, got {iters}")
        query_sq = z_query.pow(2)  # [E, U, D], reused by every E-step and the variances
        query_sq_sum = query_sq.sum(-1, keepdim=True)
        for _ in range(iters):
            resp = (log_pi - 0.5 * squared_distances(z_query, mu, query_sq_sum)).softmax(-1)  # [E, U, K]
            nk = n_lab + resp.sum(1)
            mu = (sum_lab + torch.bmm(resp.transpose(1, 2), z_query)) / nk.unsqueeze(-1)
        # Diagonal variances after the last M-step (only they use sigma^2; docs/official-code.md §9.4).
        sq_lab = torch.bmm(onehot.transpose(1, 2), z_support.pow(2))
        sq_unl = torch.bmm(resp.transpose(1, 2), query_sq)
        sum_w_z = sum_lab + torch.bmm(resp.transpose(1, 2), z_query)
        var = (sq_lab + sq_unl - 2.0 * mu * sum_w_z) / nk.unsqueeze(-1) + mu.pow(2)
        var = var.clamp_min(var_floor)  # [E, K, D]
        return diagonal_gaussian_posterior(z_query, mu, var, query_sq)


def diagonal_gaussian_posterior(
    z: torch.Tensor, mu: torch.Tensor, var: torch.Tensor, z_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """``softmax_k log N(z; mu_k, diag var_k)`` with uniform weights.

    z ``[E, N, D]`` (``z_sq`` its elementwise square, if at hand), mu and var ``[E, K, D]``
    -> ``[E, N, K]``.
    """
    inv = var.reciprocal()
    maha = (
        torch.bmm(z.pow(2) if z_sq is None else z_sq, inv.transpose(1, 2))
        - 2.0 * torch.bmm(z, (mu * inv).transpose(1, 2))
        + (mu.pow(2) * inv).sum(-1).unsqueeze(1)
    ).clamp_min(0.0)
    log_det = var.log().sum(-1).unsqueeze(1)  # [E, 1, K]
    return (-0.5 * (maha + log_det)).softmax(-1)
