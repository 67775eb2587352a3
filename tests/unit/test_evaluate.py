"""Evaluation: the accuracy and confidence interval of every table, per-episode accuracies in
episode order, and a model's accuracies from its own predictions."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from metagmvae.data.episodes import gather, sample_episodes
from metagmvae.evaluation.accuracy import episode_accuracies, model_accuracies, summarize
from metagmvae.models import build_model
from metagmvae.runtime.device import Runtime

CPU = Runtime(torch.device("cpu"), "fp32", channels_last=False)


def test_summarize_is_the_mean_and_1_96_population_std_over_root_n_in_percent():
    # by hand: mean 0.5; population variance (0.25 + 0.25 + 0 + 0) / 4 = 0.125
    assert summarize(np.array([1.0, 0.0, 0.5, 0.5])) == {
        "accuracy": 50.0,
        "ci95": round(100 * 1.96 * math.sqrt(0.125) / 2, 2),  # 34.65 (sample std: 40.01)
        "episodes": 4,
    }
    # rounded to 0.01 percent (three decimals would give 12.346)
    assert summarize(np.array([0.123456])) == {"accuracy": 12.35, "ci95": 0.0, "episodes": 1}
    acc = np.random.default_rng(0).uniform(0.2, 1.0, 1000)
    got = summarize(acc)
    assert got["accuracy"] == round(100 * statistics.fmean(acc), 2)
    assert got["ci95"] == round(100 * 1.96 * statistics.pstdev(acc) / math.sqrt(1000), 2)
    # a plain list too: mean 0.5, population std 0.3, 1.96 * 0.3 / sqrt(4) = 0.294
    assert summarize([0.2, 0.2, 0.8, 0.8]) == {"accuracy": 50.0, "ci95": 29.4, "episodes": 4}


def value_data(classes: int = 12, per_class: int = 20) -> torch.Tensor:
    """``[C, n, 1]`` items whose value is their class index (a predictor can read the truth)."""
    return torch.arange(classes, dtype=torch.float32).view(classes, 1, 1).expand(classes, per_class, 1).clone()


def test_episode_accuracies_are_per_episode_in_order_across_calls():
    eps = sample_episodes(np.random.default_rng(0), 7, 12, 20, 4, 1, 3)
    calls = []

    def right_below_class_6(support, y_support, query, way):
        """Reads each query's class from its value: right when the class index is < 6, else label 0."""
        calls.append(support.shape[0])
        truth = (query[..., 0].unsqueeze(-1) == support[..., 0].unsqueeze(1)).float().argmax(-1)  # [E, W*Q]
        truth = torch.gather(y_support, 1, truth)
        return torch.where(query[..., 0] < 6, truth, torch.zeros_like(truth))

    got = episode_accuracies(right_below_class_6, value_data(), eps, episodes_per_call=3)
    assert calls == [3, 3, 1]  # chunks of episodes_per_call, the last one shorter
    assert got.dtype == np.float64 and got.shape == (7,)
    # expected per episode: its classes below 6 are right, and so is a class >= 6 labelled 0
    want = [
        np.mean([(c < 6) or label == 0 for label, c in enumerate(classes) for _ in range(3)]) for classes in eps.classes
    ]
    np.testing.assert_array_equal(got, want)
    assert len(set(want)) > 1  # the episodes differ, so a shuffled order would show


def test_model_accuracies_are_the_models_predictions_with_the_seeded_noise():
    torch.manual_seed(0)
    model = build_model({"kind": "features", "input_dim": 8, "latent": 4, "hidden": 16, "heads": 2, "blocks": 1})
    model.eval()
    data = torch.rand(10, 20, 8, generator=torch.Generator().manual_seed(1))
    tokens = model.encode(data)
    eps = sample_episodes(np.random.default_rng(2), 6, 10, 20, 5, 1, 4)
    got = model_accuracies(model, tokens, eps, rt=CPU, samples=3, em_iters=2, episodes_per_call=6, seed=7)
    support, y_support, query, y_query = gather(tokens, eps)
    pred = model.predict(
        support, y_support, query, way=5, samples=3, em_iters=2, generator=torch.Generator().manual_seed(7)
    )
    np.testing.assert_array_equal(got, (pred == y_query).double().mean(1).numpy())
    again = model_accuracies(model, tokens, eps, rt=CPU, samples=3, em_iters=2, episodes_per_call=6, seed=7)
    np.testing.assert_array_equal(got, again)
    other = model_accuracies(model, tokens, eps, rt=CPU, samples=3, em_iters=2, episodes_per_call=6, seed=8)
    assert not np.array_equal(got, other)  # the noise comes from the seed (this untrained model is noisy)


@pytest.mark.parametrize("samples,em_iters", [(1, 2), (3, 1)])
def test_model_accuracies_use_the_given_samples_and_em_iterations(samples, em_iters):
    torch.manual_seed(0)
    model = build_model({"kind": "features", "input_dim": 8, "latent": 4, "hidden": 16, "heads": 2, "blocks": 1})
    model.eval()
    tokens = model.encode(torch.rand(10, 20, 8, generator=torch.Generator().manual_seed(1)))
    eps = sample_episodes(np.random.default_rng(2), 6, 10, 20, 5, 1, 4)
    seen = []
    real = model.predict_proba

    def recording(*args, **kwargs):
        seen.append((kwargs["samples"], kwargs["em_iters"], kwargs["way"]))
        return real(*args, **kwargs)

    model.predict_proba = recording
    model_accuracies(model, tokens, eps, rt=CPU, samples=samples, em_iters=em_iters, episodes_per_call=4, seed=0)
    assert seen == [(samples, em_iters, 5)] * 2
