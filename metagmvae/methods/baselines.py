"""Few-shot baselines scored on the same episodes as Meta-GMVAE.

Each baseline is a factory ``(load_statistics) -> Predictor`` (see
:data:`metagmvae.evaluation.accuracy.Predictor`); ``load_statistics()`` returns the training split's
per-feature ``(mean, std)`` (:func:`metagmvae.data.stores.split_statistics`, stored in the
feature store), and only a baseline that needs them (the logistic regression's
standardisation) calls it, once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from metagmvae.evaluation.accuracy import Predictor


def nearest_neighbour(load_statistics: Callable[[], tuple] | None = None) -> Predictor:
    """1-nearest-neighbour (Euclidean) on the raw inputs: the sanity baseline on pixels."""

    def predict(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> torch.Tensor:
        s = support.flatten(2).double()
        q = query.flatten(2).double()
        dist = q.pow(2).sum(-1, keepdim=True) - 2 * q @ s.transpose(1, 2) + s.pow(2).sum(-1).unsqueeze(1)
        return torch.gather(support_labels, 1, dist.argmin(-1))

    return predict


def fit_logistic_regression(
    x: torch.Tensor, y: torch.Tensor, way: int, c: float = 1.0, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on every episode at once, float64.

    Minimises, per episode, ``C * sum_i CE(W x_i + b, y_i) + ||W||^2 / 2`` (scikit-learn's
    ``LogisticRegression(C=c)``: L2 on the weights, not the bias) with L-BFGS on the sum over
    episodes, which is the same optimum because the episodes share no parameters.

    x: ``[E, N, F]``; y: ``[E, N]`` in ``[0, way)``. Returns ``(W [E, way, F], b [E, way])``.
    """
    x = x.double()
    e, _, f = x.shape
    params = torch.zeros(e, way, f + 1, dtype=torch.float64, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [params], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        w, b = params[..., :f], params[..., f]
        logits = x @ w.transpose(1, 2) + b.unsqueeze(1)
        loss = c * F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") + 0.5 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    params = params.detach()
    return params[..., :f], params[..., f]


def logistic_regression(load_statistics: Callable[[], tuple], c: float = 1.0) -> Predictor:
    """The paper's "LR(SimCLR)": features standardised with the training split's per-feature
    mean and (population) standard deviation, a logistic regression fitted on each episode's
    support set."""
    mean, std = (torch.as_tensor(a, dtype=torch.float64) for a in load_statistics())
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant features stay constant

    def predict(support: torch.Tensor, support_labels: torch.Tensor, query: torch.Tensor, way: int) -> torch.Tensor:
        m, sd = mean.to(support.device), std.to(support.device)
        s = (support.flatten(2).double() - m) / sd
        q = (query.flatten(2).double() - m) / sd
        w, b = fit_logistic_regression(s, support_labels, way, c)
        return (q @ w.transpose(1, 2) + b.unsqueeze(1)).argmax(-1)

    return predict


BASELINES = {"pixel_1nn": nearest_neighbour, "logistic_regression": logistic_regression}
