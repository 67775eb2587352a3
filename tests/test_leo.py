"""LEO (metagmvae.related.leo): hand-computed inner loop, penalties and clipping, and a tiny
end-to-end run on synthetic clusters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import related_config

from metagmvae.config import ConfigError
from metagmvae.data.episodes import episode_rng, gather, sample_episodes
from metagmvae.related import leo
from metagmvae.runtime import Runtime
from metagmvae.tracking import Run

CPU = Runtime(torch.device("cpu"), "fp32", channels_last=False)


def identity_decoder_model(finetune_steps: int) -> leo.LEO:
    """2-d features, 2-d latents, one latent step of size 1; the decoder's mean is ``w = z``."""
    model = leo.LEO(
        features=2, latents=2, inner_steps=1, finetune_steps=finetune_steps, inner_lr=1.0, finetune_lr=1.0, seed=0
    )
    with torch.no_grad():
        model.decoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    return model


# One 2-way 1-shot episode: x_0 = (1, 0) of class 0, x_1 = (0, 1) of class 1; support [E, W, K, D].
SUPPORT = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])


def test_latent_step_lowers_the_support_loss_by_the_hand_computed_amount():
    model = identity_decoder_model(finetune_steps=0)
    z0 = torch.zeros(1, 2, 1, 2, requires_grad=True)
    # z = 0: every logit 0, CE = log 2 per example, summed over the two.
    before = model.support_loss(SUPPORT, model.decode(z0, None), None)
    assert before.item() == pytest.approx(2 * math.log(2))
    # dL/dw_k = sum_i (p_ik - y_ik) x_i with p = 1/2: w_0 -> (0.5, -0.5), w_1 -> (-0.5, 0.5); each
    # example's logits become (+-0.5, -+0.5), so CE = log(1 + e^-1) each.
    w, z, after = model.adapt(z0, SUPPORT, None, create_graph=False)
    expected = torch.tensor([[[[0.5, -0.5]], [[-0.5, 0.5]]]])
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(w, expected)
    assert after.item() == pytest.approx(2 * math.log1p(math.exp(-1.0)), abs=1e-6)  # 0.6265 < 1.3863


def test_finetuning_step_on_the_weights_lowers_it_further():
    model = identity_decoder_model(finetune_steps=1)
    w, _, after = model.adapt(torch.zeros(1, 2, 1, 2, requires_grad=True), SUPPORT, None, create_graph=False)
    # From w_0 = (0.5, -0.5): p(x_0) = (s, 1 - s) with s = sigmoid(1), so dL/dw_0 = (s - 1) x_0 + (1 - s) x_1
    # and w_0 -> (0.5 + (1 - s), -0.5 - (1 - s)); the logit margin becomes 1 + 2 (1 - s).
    step = 1 - 1 / (1 + math.exp(-1.0))
    torch.testing.assert_close(w[0, 0, 0], torch.tensor([0.5 + step, -0.5 - step]))
    assert after.item() == pytest.approx(2 * math.log1p(math.exp(-(1 + 2 * step))), abs=1e-6)  # 0.3874


def test_orthogonality_penalty_hand_values():
    assert leo.orthogonality_penalty(torch.eye(2)).item() == 0.0
    assert leo.orthogonality_penalty(torch.tensor([[2.0, 0.0], [0.0, 3.0]])).item() == 0.0  # orthogonal, not unit
    # rows (1, 0), (1, 1): correlation 1/sqrt(2) off the diagonal -> (2 * 1/2) / 4 entries = 0.25
    assert leo.orthogonality_penalty(torch.tensor([[1.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(0.25)
    # opposite rows: correlation -1 -> (1 + 1) / 4 = 0.5
    assert leo.orthogonality_penalty(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])).item() == pytest.approx(0.5)


def test_gaussian_std_parameterisation_and_kl():
    params = torch.tensor([[0.0, 0.0, math.log(3.0), math.log(0.5)]])  # means (0, 0); std exp(raw) - 1 = (2, 1e-10)
    mean, kl = leo.gaussian(params, 0.0, None)
    assert mean.tolist() == [[0.0, 0.0]] and kl.tolist() == [[0.0, 0.0]]
    noise = leo.Noise(torch.Generator().manual_seed(0), dropout=0.0)
    sample, kl = leo.gaussian(params, 0.0, noise)
    eps = torch.randn(1, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sample, torch.stack([2 * eps[:, 0], 1e-10 * eps[:, 1]], 1))
    # log N(s eps; 0, s^2) - log N(s eps; 0, 1) = (s^2 - 1) eps^2 / 2 - log s: with s = 2, 1.5 eps^2 - log 2;
    # with the clamped s = 1e-10, -eps^2 / 2 + 23.03
    expected = torch.stack([1.5 * eps[:, 0] ** 2 - math.log(2.0), -0.5 * eps[:, 1] ** 2 - math.log(1e-10)], 1)
    torch.testing.assert_close(kl, expected, atol=1e-4, rtol=1e-5)


def test_gradient_clipping_by_value_then_norm():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([0.3, -0.05])
    total = leo.clip_gradients([p], value=0.1, norm=0.1)
    assert total.item() == pytest.approx(math.sqrt(0.3**2 + 0.05**2))
    # clipped to (0.1, -0.05), norm sqrt(0.0125) > 0.1, scaled to norm 0.1
    torch.testing.assert_close(p.grad, torch.tensor([0.1, -0.05]) * (0.1 / math.sqrt(0.0125)))


def test_quick_and_paper_settings_parse_and_bad_values_name_the_key():
    for profile in (None, "paper"):
        assert related_config("leo_mini_imagenet", profile).way == 5
    assert related_config("leo_mini_imagenet", "paper").lr == 0.0002739071  # the official 1-shot setting
    with pytest.raises(ConfigError, match=r"related\.leo_mini_imagenet\.dropout = 1\.0: must be < 1$"):
        related_config("leo_mini_imagenet", dropout=1.0)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['shot'\]"):
        related_config("leo_mini_imagenet", shot=1)


def clustered(classes: int, per_class: int, dim: int, seed: int) -> torch.Tensor:
    """``[C, n, dim]`` non-negative features around well separated class centres."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.rand(classes, 1, dim, generator=g)
    return (centres + 0.3 * torch.rand(classes, per_class, dim, generator=g)).float()


def test_tiny_end_to_end_is_deterministic_and_beats_chance(tmp_path):
    data = {"train": clustered(12, 20, 16, seed=0), "val": clustered(6, 20, 16, seed=1)}
    val = sample_episodes(episode_rng(1, "val", 5, 1), 20, 6, 20, 5, 1, 5)
    cfg = related_config("leo_mini_imagenet", latents=8, batch=4, query=5, steps=30, val_every=10, log_every=10)
    out = [tmp_path / "a.pt", tmp_path / "b.pt"]
    summaries = [leo.train(cfg, CPU, data, val, path, Run(), progress=False) for path in out]
    assert out[0].read_bytes() == out[1].read_bytes()
    assert summaries[0]["steps"] == 30 and 0 <= summaries[0]["best_val_accuracy"] <= 100

    predict = leo.predictor(out[0], CPU)
    test = sample_episodes(episode_rng(2, "val", 5, 3), 30, 6, 20, 5, 3, 5)  # another shot than trained
    support, y_support, query, y_query = gather(data["val"], test)
    pred = predict(support, y_support, query, 5)
    assert (pred == y_query).float().mean().item() > 0.6  # chance: 0.2
    # Episode by episode, and with the support shuffled, the predictions are the same.
    perm = torch.from_numpy(np.random.default_rng(0).permutation(support.shape[1]))
    one = [predict(support[i : i + 1, perm], y_support[i : i + 1, perm], query[i : i + 1], 5) for i in range(3)]
    assert torch.equal(torch.cat(one), pred[:3])
