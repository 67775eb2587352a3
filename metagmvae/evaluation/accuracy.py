"""Few-shot evaluation on fixed episodes: per-episode accuracy, mean and 95% confidence interval."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from metagmvae.data.episodes import EpisodeSet, gather
from metagmvae.runtime.progress import progress as progress_bar

Predictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``(support [E, W*s, ...], support_labels [E, W*s], query [E, W*Q, ...], way) -> labels [E, W*Q]``."""


def summarize(accuracies: np.ndarray) -> dict[str, float]:
    """Mean accuracy and 95% CI half-width, in percent rounded to 0.01: ``1.96 * std / sqrt(n)``
    with the population std (ddof = 0), as the official code reports."""
    acc = np.asarray(accuracies, dtype=np.float64)
    return {
        "accuracy": round(float(100.0 * acc.mean()), 2),
        "ci95": round(float(100.0 * 1.96 * acc.std() / math.sqrt(len(acc))), 2),
        "episodes": int(len(acc)),
    }


def episode_accuracies(
    predict: Predictor,
    data: torch.Tensor,
    episodes: EpisodeSet,
    episodes_per_call: int,
    progress: str | None = None,
) -> np.ndarray:
    """Accuracy of every episode, ``[n]`` float64 in [0, 1].

    data: class-structured ``[C, n, *item]`` on the compute device; ``episodes_per_call``
    episodes are gathered and predicted together.
    """
    out = []
    starts = range(0, len(episodes), episodes_per_call)
    for start in progress_bar(starts, desc=progress, disable=progress is None, leave=False, unit="call"):
        chunk = episodes.slice(start, start + episodes_per_call)
        support, y_support, query, y_query = gather(data, chunk)
        pred = predict(support, y_support, query, episodes.way)
        out.append((pred == y_query).double().mean(1).cpu().numpy())
    return np.concatenate(out)


def meta_gmvae_predictor(model, rt, *, samples: int, em_iters: int, generator: torch.Generator) -> Predictor:
    """A Meta-GMVAE ``model``'s transductive prediction as a :data:`Predictor` on encoded
    episodes: ``samples`` Monte-Carlo samples per point and ``em_iters`` semi-supervised EM
    steps, under the runtime ``rt``'s autocast, the sampling noise drawn from ``generator``."""

    def predict(support, y_support, query, way):
        with rt.autocast():
            return model.predict(
                support, y_support, query, way=way, samples=samples, em_iters=em_iters, generator=generator
            )

    return predict


def model_accuracies(
    model,
    tokens: torch.Tensor,
    episodes: EpisodeSet,
    *,
    rt,
    samples: int,
    em_iters: int,
    episodes_per_call: int,
    seed: int,
    progress: str | None = None,
) -> np.ndarray:
    """Per-episode accuracy of a Meta-GMVAE ``model`` (``[n]`` in [0, 1]) on ``tokens``, the
    encoded class-structured inputs ``model.encode(data)`` (see :func:`meta_gmvae_predictor`);
    the sampling noise is seeded by ``seed`` alone."""
    predict = meta_gmvae_predictor(model, rt, samples=samples, em_iters=em_iters, generator=rt.generator(seed))
    return episode_accuracies(predict, tokens, episodes, episodes_per_call, progress)


def mean_accuracy(predict: Predictor, data: torch.Tensor, episodes: EpisodeSet, episodes_per_call: int) -> float:
    """Mean accuracy (%) of ``predict`` over ``episodes`` of ``data`` ``[C, n, *item]`` (what a
    validation that selects a checkpoint scores)."""
    return summarize(episode_accuracies(predict, data, episodes, episodes_per_call))["accuracy"]
