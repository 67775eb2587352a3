"""LEO (metagmvae.methods.leo): hand-computed inner loop, penalties and clipping, the outer loss
term by term with its gradient through the inner loop, and a tiny run that must learn where an
untrained LEO is near chance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import related_config

from metagmvae.data.episodes import episode_rng, gather, sample_episodes
from metagmvae.evaluation.accuracy import episode_accuracies
from metagmvae.methods import leo
from metagmvae.runtime.config import ConfigError
from metagmvae.runtime.device import Runtime
from metagmvae.runtime.tracking import Run

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
    for name in ("leo_mini_imagenet", "leo_mini_imagenet_5shot"):
        for profile in (None, "paper"):
            assert related_config(name, profile).way == 5
    assert related_config("leo_mini_imagenet_5shot").train_shot == 5
    assert related_config("leo_mini_imagenet", "paper").lr == 0.0002739071  # the official 1-shot setting
    with pytest.raises(ConfigError, match=r"related\.leo_mini_imagenet\.dropout = 1\.0: must be < 1$"):
        related_config("leo_mini_imagenet", dropout=1.0)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['shot'\]"):
        related_config("leo_mini_imagenet", shot=1)


def small_model(dtype=torch.float32, **overrides) -> tuple[leo.LEO, leo.Config]:
    cfg = related_config("leo_mini_imagenet", **{"latents": 3, "inner_steps": 2, "finetune_steps": 2, **overrides})
    return leo.build_model(cfg, 4).to(dtype), cfg


def episode(dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 2-episode 3-way 2-shot batch of 4-d features: support [2, 3, 2, 4], query [2, 6, 4], labels."""
    gen = torch.Generator().manual_seed(0)
    support = torch.randn(2, 3, 2, 4, generator=gen, dtype=dtype)
    query = torch.randn(2, 6, 4, generator=gen, dtype=dtype)
    return support, query, torch.tensor([[0, 0, 1, 1, 2, 2]] * 2)


def terms_of(model, cfg, seed: int = 1, **weights) -> dict[str, torch.Tensor]:
    support, query, labels = episode(model.encoder.weight.dtype)
    noise = leo.Noise(torch.Generator().manual_seed(seed), dropout=0.0)
    return leo.meta_loss(model, cfg.model_copy(update=weights), support, query, labels, noise)


def test_outer_loss_is_the_query_loss_plus_each_weighted_regulariser():
    model, cfg = small_model()
    weights = {"kl_weight": 0.5, "encoder_penalty": 3.0, "l2_penalty": 0.25, "orthogonality_penalty": 7.0}
    terms = terms_of(model, cfg, **weights)
    expected = terms["query_ce"] + sum(
        w * terms[name]
        for name, w in zip(("kl", "encoder_penalty", "l2", "orthogonality"), weights.values(), strict=True)
    )
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    for name in weights:  # each weight scales its own term only: the loss moves by exactly weight * term
        off = terms_of(model, cfg, **(weights | {name: 0.0}))["loss"]
        term = {"kl_weight": "kl", "l2_penalty": "l2", "orthogonality_penalty": "orthogonality"}.get(name, name)
        assert (terms["loss"] - off).item() == pytest.approx(weights[name] * terms[term].item(), rel=1e-5)


def test_regularisers_against_direct_computations():
    model, cfg = small_model()
    terms = terms_of(model, cfg)
    # L2: sum(w^2) / 2 over the encoder, relation network and decoder weights, not the step sizes.
    l2 = 0.5 * sum(p.pow(2).sum() for name, p in model.named_parameters() if name.endswith("weight"))
    assert terms["l2"].item() == pytest.approx(l2.item(), rel=1e-6)
    with torch.no_grad():
        model.inner_lr.mul_(1000.0)
    assert terms_of(model, cfg)["l2"].item() == pytest.approx(l2.item(), rel=1e-6)
    # Encoder penalty: mean squared distance between the codes and the adapted codes (same noise).
    model, cfg = small_model()
    support, _, _ = episode()
    noise = leo.Noise(torch.Generator().manual_seed(1), dropout=0.0)
    z, kl = model.encode(support, noise)
    _, adapted, _ = model.adapt(z, support, noise, create_graph=True)
    assert terms["encoder_penalty"].item() == pytest.approx((adapted - z).pow(2).mean().item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl.mean().item(), rel=1e-5)
    assert terms["orthogonality"].item() == pytest.approx(leo.orthogonality_penalty(model.decoder.weight.T).item())


def test_encoder_penalty_pulls_the_codes_towards_fixed_adapted_codes():
    """The penalty's gradient treats the adapted codes z' as constants (stop-gradient): it is
    d mean((c - z)^2) / d encoder with c = z'."""
    model, cfg = small_model()
    (grad,) = torch.autograd.grad(terms_of(model, cfg)["encoder_penalty"], model.encoder.weight)
    support, _, _ = episode()
    noise = leo.Noise(torch.Generator().manual_seed(1), dropout=0.0)
    z, _ = model.encode(support, noise)
    _, adapted, _ = model.adapt(z, support, noise, create_graph=True)
    (expected,) = torch.autograd.grad((adapted.detach() - z).pow(2).mean(), model.encoder.weight)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-9)
    assert expected.abs().max() > 1e-6


def test_query_loss_gradient_reaches_the_encoder_through_the_inner_loop():
    """The query loss after the latent and fine-tuning steps, differentiated (second order, through
    every inner step) with respect to the encoder, against central finite differences (float64
    weights; the logits are float32, hence the step of 1e-3)."""
    model, cfg = small_model(torch.float64)
    (grad,) = torch.autograd.grad(terms_of(model, cfg)["query_ce"], model.encoder.weight)
    assert grad.abs().max() > 1e-4
    weight = model.encoder.weight
    for index in [(0, 0), (1, 2), (2, 3)]:
        losses = []
        for shift in (1e-3, -1e-3):
            with torch.no_grad():
                weight[index] += shift
            losses.append(terms_of(model, cfg)["query_ce"].item())
            with torch.no_grad():
                weight[index] -= shift
        assert grad[index].item() == pytest.approx((losses[0] - losses[1]) / 2e-3, rel=2e-3), index


def hidden_classes(classes: int, per_class: int, seed: int) -> torch.Tensor:
    """``[classes, per_class, 16]``: the class in the first 2 features (unit-scale centres, noise 0.1),
    the other 14 pure noise of std 1.5, so the normalised features are dominated by noise."""
    gen = torch.Generator().manual_seed(seed)
    x = 1.5 * torch.randn(classes, per_class, 16, generator=gen)
    x[..., :2] = torch.randn(classes, 1, 2, generator=gen) + 0.1 * torch.randn(classes, per_class, 2, generator=gen)
    return x


def test_meta_training_learns_where_an_untrained_leo_is_near_chance(tmp_path):
    """5-way 1-shot on :func:`hidden_classes`: untrained 24.7%, after 200 meta-training steps 55.7%
    (measured; seeds 1 and 2: 56.4%, 55.6%); without the inner loop it stays at 23.2%."""
    data = {"train": hidden_classes(40, 20, seed=0), "val": hidden_classes(10, 20, seed=1)}
    test = hidden_classes(10, 20, seed=2)
    val = sample_episodes(episode_rng(1, "val", 5, 1), 20, 10, 20, 5, 1, 5)
    episodes = sample_episodes(episode_rng(2, "test", 5, 1), 100, 10, 20, 5, 1, 10)
    overrides = {"latents": 8, "batch": 4, "query": 5, "steps": 200, "val_every": 200, "log_every": 100, "lr": 3e-3}
    cfg = related_config("leo_mini_imagenet", **overrides)
    untrained = episode_accuracies(leo.model_predictor(leo.build_model(cfg, 16).eval(), CPU, True), test, episodes, 50)
    assert untrained.mean() < 0.3, untrained.mean()  # chance: 0.2

    out = [tmp_path / "a.pt", tmp_path / "b.pt"]
    summaries = [leo.train(cfg, CPU, data, val, path, Run(), progress=False) for path in out]
    assert out[0].read_bytes() == out[1].read_bytes()
    assert summaries[0]["steps"] == 200
    predict = leo.predictor(out[0], CPU)
    trained = episode_accuracies(predict, test, episodes, 50)
    assert trained.mean() > untrained.mean() + 0.2, (untrained.mean(), trained.mean())

    other = sample_episodes(episode_rng(2, "val", 5, 3), 30, 10, 20, 5, 3, 5)  # another shot than trained
    support, y_support, query, _ = gather(test, other)
    pred = predict(support, y_support, query, 5)
    # Episode by episode, and with the support shuffled, the predictions are the same.
    perm = torch.from_numpy(np.random.default_rng(0).permutation(support.shape[1]))
    one = [predict(support[i : i + 1, perm], y_support[i : i + 1, perm], query[i : i + 1], 5) for i in range(3)]
    assert torch.equal(torch.cat(one), pred[:3])
