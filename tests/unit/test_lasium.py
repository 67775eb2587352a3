"""LASIUM: anchor rejection, the three in-class sampling rules, generated classes that stay
together (in the latent space and through the generator), the query shifts, BatchNorm on each
episode's statistics, the ProtoNet loss, and tiny runs in which the VAE and the ProtoNet must learn."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from conftest import related_config, related_section

from metagmvae.analysis import plots
from metagmvae.data.episodes import sample_episodes
from metagmvae.evaluation.accuracy import episode_accuracies
from metagmvae.methods import lasium
from metagmvae.runtime.config import ConfigError
from metagmvae.runtime.device import Runtime
from metagmvae.schema.related import BN_STATISTICS, STRATEGIES
from metagmvae.training.loop import NonFiniteLossError

CPU = Runtime(torch.device("cpu"), "fp32", channels_last=False)
QUICK = related_section("lasium_omniglot")  # the raw section of params.yaml


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Recorder:
    """A tracking run that keeps what is logged."""

    def __init__(self):
        self.metrics: list[tuple[dict, int]] = []

    def log_metrics(self, metrics, step=None):
        self.metrics.append((dict(metrics), step))


def members(anchors: torch.Tensor, count: int, seed: int = 2, **rule) -> torch.Tensor:
    """:func:`lasium.class_members` with the quick profile's rule, ``rule`` overriding it."""
    keys = ("strategy", "sigma", "alpha", "epsilon", "max_tries")
    return lasium.class_members(anchors, count, **({k: QUICK[k] for k in keys} | rule), generator=gen(seed))


def test_quick_and_paper_profiles_parse_and_bad_values_name_the_key():
    for name in ("lasium_omniglot", "lasium_mini_imagenet"):
        assert related_config(name).strategy in STRATEGIES
        assert related_config(name, "paper").way == 5
    assert related_config("lasium_mini_imagenet", "paper").latent == 512
    with pytest.raises(ConfigError, match=r"lasium_omniglot\.strategy = 'GAN': must be one of \['N', 'RO', 'OC'\]"):
        related_config("lasium_omniglot", strategy="GAN")
    with pytest.raises(ConfigError, match=r"alpha = 1: must be < 1$"):
        related_config("lasium_omniglot", alpha=1)
    with pytest.raises(ConfigError, match=r"bn_statistics = 'batch': must be one of \['running', 'episode'\]"):
        related_config("lasium_omniglot", bn_statistics="batch")
    with pytest.raises(ConfigError, match=r"query_shift = -1: must be >= 0"):
        related_config("lasium_omniglot", query_shift=-1)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['typo'\]"):
        related_config("lasium_omniglot", typo=10)
    with pytest.raises(ValueError, match=r"query_shift = 5: shifts need images, the items are \[16\]"):
        lasium.Lasium(related_config("lasium_omniglot"), (16,))


def test_anchors_are_pairwise_at_least_epsilon_apart():
    # In 2-d, 5 prior draws are closer than 1.0 in most sets, so the rejection has work to do.
    first = torch.randn(400, 5, 2, generator=gen(3))
    assert (lasium.min_pairwise_distance(first) < 1.0).float().mean() > 0.5
    anchors = lasium.sample_anchors(400, 5, 2, epsilon=1.0, max_tries=1000, generator=gen(3))
    assert anchors.shape == (400, 5, 2)
    dist = torch.cdist(anchors, anchors) + 1e9 * torch.eye(5)
    assert dist.min() >= 1.0


def test_min_pairwise_distance_by_hand():
    z = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [0.0, 2.0]]])
    assert lasium.min_pairwise_distance(z).tolist() == [2.0]


def test_anchor_sampling_raises_when_epsilon_is_impossible():
    with pytest.raises(ValueError, match=r"epsilon = 50.0: .* after max_tries = 20 draws"):
        lasium.sample_anchors(2, 5, 2, epsilon=50.0, max_tries=20, generator=gen())


def test_every_class_starts_with_its_anchor():
    anchors = torch.randn(2, 4, 8, generator=gen(1))
    for strategy in STRATEGIES:
        assert torch.equal(members(anchors, 6, strategy=strategy)[:, :, 0], anchors), strategy


def test_ro_members_lie_at_fraction_alpha_towards_draws_at_least_epsilon_away():
    anchors = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # [N=2, d=2]
    others = torch.tensor([[[10.0, 0.0]], [[2.0, -6.0]]])  # [N, M=1, d]
    # 0 + 0.3 * (10 - 0) = 3; 4 + 0.3 * (-6 - 4) = 1
    assert lasium.interpolate(anchors, others, 0.3).tolist() == [[[3.0, 0.0]], [[2.0, 1.0]]]

    # In 2-d about 39% of prior draws fall within 1.0 of an anchor at the origin: they are redrawn.
    anchors = torch.zeros(50, 5, 2)
    ro = members(anchors, 9, strategy="RO", alpha=0.2, epsilon=1.0)[:, :, 1:]
    others = anchors.unsqueeze(2) + (ro - anchors.unsqueeze(2)) / 0.2  # the draws the members moved towards
    assert others.norm(dim=-1).min() >= 1.0 - 1e-5
    assert (torch.randn(50, 5, 8, 2, generator=gen(2)).norm(dim=-1) < 1.0).float().mean() > 0.3
    with pytest.raises(ValueError, match=r"epsilon = 9.0: prior draws in 2 dimensions stayed within 9.0"):
        members(anchors, 3, strategy="RO", epsilon=9.0, max_tries=5)


def test_n_members_have_the_configured_std_around_their_anchor():
    anchors = torch.tensor([[[5.0, -5.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [-3.0, 2.0, 1.0, 9.0]]])
    noise = members(anchors, 20_001, seed=4, strategy="N", sigma=0.7)[:, :, 1:] - anchors.unsqueeze(2)
    assert abs(noise.std().item() - 0.7) < 0.005  # 240,000 draws: the std's standard error is about 0.001
    assert noise.mean(2).abs().max().item() < 0.02


def test_oc_members_move_towards_the_other_anchors_in_turn():
    """3-way, the anchor and 4 more: member r of class i moves a fraction alpha towards anchor
    (i + r) mod 3; where that is its own anchor (r = 3) it is the anchor plus N(0, sigma^2) noise."""
    anchors = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]])
    oc = members(anchors, 5, strategy="OC", alpha=0.25, sigma=0.5)
    for i in range(3):
        for r in (1, 2, 4):
            expected = anchors[0, i] + 0.25 * (anchors[0, (i + r) % 3] - anchors[0, i])
            torch.testing.assert_close(oc[0, i, r], expected)
        assert 0 < (oc[0, i, 3] - anchors[0, i]).norm() < 3.0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_generated_members_are_nearer_their_anchor_than_any_other_anchor(strategy):
    """With the quick profile's rule (20-way tasks in 20 latent dimensions), the members of 200
    generated tasks are nearest to their own class's anchor (measured: 99.995% for N, 99.59% for RO
    and 99.58% for OC of 20,000; members drawn regardless of the anchor would be so for 1 in 20)."""
    c = related_config("lasium_omniglot")
    anchors = lasium.sample_anchors(200, c.way, c.latent, c.epsilon, c.max_tries, gen(5))
    z = members(anchors, c.shot + c.query, strategy=strategy)[:, :, 1:]  # [T, W, M, d], anchors left out
    nearest = torch.cdist(z.flatten(1, 2), anchors).argmin(-1).view(z.shape[:3])
    assert (nearest == torch.arange(c.way).view(1, -1, 1)).float().mean() > 0.99


def test_protonet_loss_on_a_two_way_one_shot_case_by_hand():
    support = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])  # prototypes of classes 0 and 1
    query = torch.tensor([[[0.0, 0.0], [1.5, 0.5]]])
    # query 0: squared distances (0, 4) -> -log softmax_0 = log(1 + e^-4)
    # query 1: squared distances (2.5, 0.5) -> -log softmax_1 = log(1 + e^-2)
    expected = (math.log1p(math.exp(-4)) + math.log1p(math.exp(-2))) / 2  # 0.072539
    loss, acc = lasium.protonet_loss(support, torch.tensor([[0, 1]]), query, torch.tensor([[0, 1]]), 2)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert acc.item() == 1.0


def test_prototypes_average_each_labels_support_items():
    emb = torch.tensor([[[1.0], [10.0], [3.0], [20.0]]])
    assert lasium.prototypes(emb, torch.tensor([[1, 0, 1, 0]]), 2).tolist() == [[[15.0], [2.0]]]


def test_query_shifts_move_each_image_by_its_own_offset_within_the_bound():
    images = torch.zeros(400, 1, 28, 28)
    images[:, 0, 14, 10] = 1.0  # one stroke pixel
    shifted = lasium.shift_images(images, 5, gen(6))
    where = shifted[:, 0].flatten(1).argmax(1)
    dy, dx = where // 28 - 14, where % 28 - 10
    assert shifted.sum() == 400 and shifted.min() == 0  # every pixel still inside, moved, nothing added
    assert dy.abs().max() == 5 and dx.abs().max() == 5  # the whole range [-5, 5] is drawn
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 100  # each image its own offset (121 possible)
    covered = lasium.shift_images(torch.ones(50, 1, 28, 28), 3, gen(7)).sum((1, 2, 3))  # the border is filled with 0
    assert set(covered.tolist()) <= {float((28 - a) * (28 - b)) for a in range(4) for b in range(4)}
    assert covered.min() < 28 * 28


def test_episode_statistics_normalise_each_batch_and_leave_the_running_ones():
    cfg = related_config("lasium_omniglot", bn_statistics="episode", embed_hidden=8)
    torch.manual_seed(0)
    model = lasium.Lasium(cfg, (1, 28, 28)).eval()
    before = copy.deepcopy(model.embed.state_dict())
    support = torch.rand(3, 5, 1, 28, 28, generator=gen(8))  # 3 episodes, 5-way 1-shot
    query = torch.rand(3, 10, 1, 28, 28, generator=gen(9))
    labels = torch.arange(5).expand(3, -1)
    predict = lasium.nearest_prototype(model, CPU)
    pred = predict(support, labels, query, 5)
    for key, value in model.embed.state_dict().items():
        assert torch.equal(value, before[key]), key  # running statistics (and counts) untouched
    assert not model.embed.training
    # Each episode as the official protocol: its support and its queries through a training-mode copy.
    train_mode = copy.deepcopy(model.embed).train()
    with torch.no_grad():
        for e in range(3):
            protos = train_mode(support[e])  # 1-shot: the prototypes are the support embeddings
            expected = lasium.squared_distances(train_mode(query[e])[None], protos[None]).argmin(-1)[0]
            assert torch.equal(pred[e], expected)
    assert torch.equal(predict(support[1:2], labels[1:2], query[1:2], 5), pred[1:2])  # per episode
    running = lasium.nearest_prototype(lasium.Lasium(cfg, (1, 28, 28)), CPU)  # a fresh model in training mode
    assert running(support, labels, query, 5).shape == pred.shape


def clustered(classes: int, per_class: int, dim: int, seed: int) -> torch.Tensor:
    """Non-negative "features" ``[classes, per_class, dim]``: a random centre per class plus small noise."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 4, (classes, 1, dim))
    return torch.from_numpy(np.abs(centres + rng.normal(0, 0.3, (classes, per_class, dim)))).float()


TINY = {  # overrides of related.lasium_mini_imagenet
    "latent": 4,
    "vae_hidden": 32,
    "vae_steps": 120,
    "vae_batch": 32,
    "epsilon": 1.0,
    "way": 3,
    "shot": 1,
    "query": 3,
    "batch": 2,
    "steps": 40,
    "embed_hidden": 32,
    "val_every": 20,
    "val_episodes_per_call": 8,
    "log_every": 10,
}


def tiny_config(**overrides) -> lasium.Config:
    return related_config("lasium_mini_imagenet", **(TINY | overrides))


def generated_accuracy(model: lasium.Lasium, tasks: int = 200) -> tuple[float, float]:
    """ProtoNet loss and accuracy of ``model``'s embedding on ``tasks`` fresh generated tasks."""
    c = model.cfg
    with torch.no_grad():
        items = model.generate(tasks, gen(7))
        emb = model.embedding(items.flatten(0, 2)).view(tasks, c.way, c.shot + c.query, -1)
        labels = torch.arange(c.way).view(1, c.way, 1)
        loss, acc = lasium.protonet_loss(
            emb[:, :, : c.shot].flatten(1, 2),
            labels.expand(tasks, -1, c.shot).flatten(1),
            emb[:, :, c.shot :].flatten(1, 2),
            labels.expand(tasks, -1, c.query).flatten(1),
            c.way,
        )
    return loss.item(), acc.item()


def test_vae_and_protonet_learn_and_generated_classes_stay_together(tmp_path):
    """On the unlabeled pool of 12 clusters: the VAE's reconstruction error falls (measured: 7.97
    nats per item over the first 10 steps, 3.64 over the last 10); each generated member, decoded,
    is nearer its own anchor's item than the other anchors' (77.8% of 3-way members, chance 33%);
    and 200 ProtoNet steps on generated
    tasks take held-out generated tasks from loss 1.053 / accuracy 69.9% (untrained embedding, the
    same generator) to 0.456 / 79.9%."""
    data = {"train": clustered(12, 20, 16, 0), "val": clustered(6, 20, 16, 1)}
    val_eps = sample_episodes(np.random.default_rng(0), 16, 6, 20, way=5, shot=1, query=5)
    cfg = tiny_config(vae_steps=1000, steps=200, val_every=200, log_every=100)
    run = Recorder()
    lasium.train(cfg, CPU, data, val_eps, tmp_path / "m.pt", run, progress=False)
    model = lasium.load_model(tmp_path / "m.pt", CPU)
    rec = [metrics["vae/rec"] for metrics, _ in run.metrics if "vae/rec" in metrics]
    assert rec[-1] < 0.5 * rec[0], rec

    with torch.no_grad():
        items = model.standardize(model.generate(50, gen(123)))  # [T, W, M, F]
    distances = (items[:, :, 1:].unsqueeze(3) - items[:, None, None, :, 0]).pow(2).sum(-1)  # [T, W, M - 1, W]
    together = (distances.argmin(-1) == torch.arange(cfg.way).view(1, -1, 1)).float().mean()
    assert together > 0.6, together

    torch.manual_seed(cfg.seed)
    untrained = lasium.Lasium(cfg, (16,)).eval()
    untrained.vae.load_state_dict(model.vae.state_dict())
    untrained.mean.copy_(model.mean)
    untrained.std.copy_(model.std)
    (loss0, acc0), (loss, acc) = generated_accuracy(untrained), generated_accuracy(model)
    assert loss < 0.6 * loss0 and acc > acc0 + 0.05, (loss0, acc0, loss, acc)


def test_tiny_run_is_deterministic_label_free_and_predicts_any_episode(tmp_path):
    data = {"train": clustered(12, 20, 16, 0), "val": clustered(6, 20, 16, 1)}
    val_eps = sample_episodes(np.random.default_rng(0), 16, 6, 20, way=5, shot=1, query=5)
    cfg = tiny_config()
    run = Recorder()
    summary = lasium.train(cfg, CPU, data, val_eps, tmp_path / "a.pt", run, progress=False)
    assert summary["steps"] == 40 and summary["vae_steps"] == 120
    logged = {key for metrics, _ in run.metrics for key in metrics}
    assert {"vae/rec", "vae/kl", "train/loss", "train/accuracy", "val/accuracy"} <= logged
    # The checkpoint is the best validated embedding (measured: 98.25% at step 20, 84.50% at step
    # 40; chance is 20%), and scoring it again on the validation episodes gives that accuracy.
    val = [metrics["val/accuracy"] for metrics, _ in run.metrics if "val/accuracy" in metrics]
    assert summary["best_val_accuracy"] == round(max(val), 2) > val[-1] and max(val) > 90, val
    rescored = episode_accuracies(lasium.predictor(tmp_path / "a.pt", CPU), data["val"], val_eps, 8)
    assert 100 * rescored.mean() == pytest.approx(max(val), abs=0.005)

    # The same pool regrouped into other "classes" gives the same bytes: the labels are never used.
    regrouped = data | {"train": data["train"].reshape(24, 10, 16)}
    lasium.train(cfg, CPU, regrouped, val_eps, tmp_path / "b.pt", Recorder(), progress=False)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()

    test = clustered(8, 20, 16, 2)
    episodes = sample_episodes(np.random.default_rng(1), 40, 8, 20, way=5, shot=1, query=5)
    accuracy = episode_accuracies(lasium.predictor(tmp_path / "a.pt", CPU), test, episodes, 16)
    assert accuracy.shape == (40,) and accuracy.mean() > 0.9, accuracy  # 5-way on unseen classes (measured: 0.99)
    generated, images, title = lasium.sample_tasks(tmp_path / "a.pt", cfg, CPU, tasks=2)
    assert generated.shape == (2, 3, 4, 16) and not images and title == f"LASIUM-{cfg.strategy}"
    assert torch.equal(generated, lasium.sample_tasks(tmp_path / "b.pt", cfg, CPU, tasks=2)[0])  # seeded by cfg.seed


def test_tiny_image_run_generates_images_and_predicts_every_episode(tmp_path):
    images = (torch.rand(10, 4, 1, 28, 28, generator=gen(5)) > 0.8).float()
    overrides = {"latent": 8, "vae_hidden": 8, "vae_steps": 3, "steps": 2, "val_every": 2, "query_shift": 3}
    for bn in BN_STATISTICS:
        cfg = tiny_config(**overrides, bn_statistics=bn)
        val_eps = sample_episodes(np.random.default_rng(0), 4, 10, 4, way=3, shot=1, query=2)
        lasium.train(cfg, CPU, {"train": images, "val": images}, val_eps, tmp_path / "m.pt", Recorder(), progress=False)
        model = lasium.load_model(tmp_path / "m.pt", CPU)
        tasks = model.generate(2, gen())
        assert tasks.shape == (2, 3, 4, 1, 28, 28) and tasks.min() >= 0 and tasks.max() <= 1
        support, query = images[:3, 0].unsqueeze(0), images[:3, 1:3].flatten(0, 1).unsqueeze(0)  # 3-way 1-shot
        pred = lasium.predictor(tmp_path / "m.pt", CPU)(support, torch.tensor([[0, 1, 2]]), query, 3)
        assert pred.shape == (1, 6) and pred.min() >= 0 and pred.max() <= 2
    generated, images, _ = lasium.sample_tasks(model, cfg, CPU)
    plots.generated_tasks_figure(generated, images, "LASIUM", tmp_path / "tasks.png")
    assert images and (tmp_path / "tasks.png").stat().st_size > 1000


def test_non_finite_data_stops_training(tmp_path):
    data = {"train": clustered(4, 10, 16, 0), "val": clustered(4, 10, 16, 1)}
    data["train"][0, 0, 0] = float("nan")
    val_eps = sample_episodes(np.random.default_rng(0), 2, 4, 10, way=3, shot=1, query=2)
    with pytest.raises(NonFiniteLossError, match="step 1: vae/rec is not finite"):
        lasium.train(tiny_config(), CPU, data, val_eps, tmp_path / "m.pt", Recorder(), progress=False)
    assert not (tmp_path / "m.pt").exists()
