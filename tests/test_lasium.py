"""LASIUM: anchor rejection, the two in-class sampling rules, the ProtoNet loss, and a tiny run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import related_config

from metagmvae import plots
from metagmvae.config import ConfigError
from metagmvae.data.episodes import sample_episodes
from metagmvae.evaluate import episode_accuracies
from metagmvae.loop import NonFiniteLossError
from metagmvae.related import lasium
from metagmvae.runtime import Runtime

CPU = Runtime(torch.device("cpu"), "fp32", channels_last=False)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Recorder:
    """A tracking run that keeps what is logged."""

    def __init__(self):
        self.metrics: list[tuple[dict, int]] = []

    def log_metrics(self, metrics, step=None):
        self.metrics.append((dict(metrics), step))


def test_quick_and_paper_settings_parse_and_bad_values_name_the_key():
    assert isinstance(related_config("lasium_omniglot"), lasium.Config)
    assert related_config("lasium_omniglot").way == 20 and related_config("lasium_omniglot", "paper").way == 5
    assert related_config("lasium_mini_imagenet", "paper").latent == 512
    with pytest.raises(ConfigError, match=r"related\.lasium_omniglot\.strategy = 'OC': must be one of \['N', 'RO'\]"):
        related_config("lasium_omniglot", strategy="OC")
    with pytest.raises(ConfigError, match=r"related\.lasium_omniglot\.alpha = 1: must be < 1$"):
        related_config("lasium_omniglot", alpha=1)
    with pytest.raises(ConfigError, match=r"related\.lasium_omniglot: unknown key\(s\) \['vae_epochs'\]"):
        related_config("lasium_omniglot", vae_epochs=10)


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


def test_ro_members_lie_at_fraction_alpha_of_the_segment():
    anchors = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # [N=2, d=2]
    others = torch.tensor([[[10.0, 0.0]], [[2.0, -6.0]]])  # [N, M=1, d]
    # 0 + 0.3 * (10 - 0) = 3; 4 + 0.3 * (-6 - 4) = 1
    assert lasium.interpolate(anchors, others, 0.3).tolist() == [[[3.0, 0.0]], [[2.0, 1.0]]]

    anchors = torch.randn(2, 5, 8, generator=gen(1))
    members = lasium.class_members(anchors, 7, "RO", sigma=0.5, alpha=0.2, generator=gen(2))
    others = torch.randn(2, 5, 7, 8, generator=gen(2))  # the same draws the sampler made
    torch.testing.assert_close(members, anchors.unsqueeze(2) + 0.2 * (others - anchors.unsqueeze(2)))
    ratio = (members - anchors.unsqueeze(2)).norm(dim=-1) / (others - anchors.unsqueeze(2)).norm(dim=-1)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.2))


def test_n_members_have_the_configured_std_around_their_anchor():
    anchors = torch.tensor([[[5.0, -5.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [-3.0, 2.0, 1.0, 9.0]]])
    members = lasium.class_members(anchors, 20_000, "N", sigma=0.7, alpha=0.5, generator=gen(4))
    noise = members - anchors.unsqueeze(2)  # 240,000 draws: the std's standard error is about 0.001
    assert abs(noise.std().item() - 0.7) < 0.005
    assert noise.mean(2).abs().max().item() < 0.02


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


def clustered(classes: int, per_class: int, dim: int, seed: int) -> torch.Tensor:
    """Non-negative "features" ``[classes, per_class, dim]``: a random centre per class plus small noise."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 4, (classes, 1, dim))
    return torch.from_numpy(np.abs(centres + rng.normal(0, 0.3, (classes, per_class, dim)))).float()


TINY = {  # overrides of params.yaml's related.lasium_omniglot
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


def test_tiny_run_is_deterministic_label_free_and_beats_chance(tmp_path):
    data = {"train": clustered(12, 20, 16, 0), "val": clustered(6, 20, 16, 1)}
    val_eps = sample_episodes(np.random.default_rng(0), 16, 6, 20, way=5, shot=1, query=5)
    cfg = related_config("lasium_omniglot", **TINY)
    run = Recorder()
    summary = lasium.train(cfg, CPU, data, val_eps, tmp_path / "a.pt", run, progress=False)
    assert summary["steps"] == 40 and summary["vae_steps"] == 120
    assert 20.0 < summary["best_val_accuracy"] <= 100.0
    logged = {key for metrics, _ in run.metrics for key in metrics}
    assert {"vae/rec", "vae/kl", "train/loss", "train/accuracy", "val/accuracy"} <= logged

    # The same pool regrouped into other "classes" gives the same bytes: the labels are never used.
    regrouped = data | {"train": data["train"].reshape(24, 10, 16)}
    lasium.train(cfg, CPU, regrouped, val_eps, tmp_path / "b.pt", Recorder(), progress=False)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()

    test = clustered(8, 20, 16, 2)
    episodes = sample_episodes(np.random.default_rng(1), 40, 8, 20, way=5, shot=1, query=5)
    accuracy = episode_accuracies(lasium.predictor(tmp_path / "a.pt", CPU), test, episodes, 16).mean()
    assert accuracy > 0.8  # chance is 0.2

    generated, images, title = lasium.sample_tasks(tmp_path / "a.pt", cfg, CPU, tasks=2)
    assert generated.shape == (2, 3, 4, 16) and not images and title == "LASIUM-RO"
    assert torch.equal(generated, lasium.sample_tasks(tmp_path / "b.pt", cfg, CPU, tasks=2)[0])  # seeded by cfg.seed


def test_tiny_image_run_generates_images_and_predicts_every_episode(tmp_path):
    images = (torch.rand(10, 4, 1, 28, 28, generator=gen(5)) > 0.8).float()
    cfg = related_config(
        "lasium_omniglot", **TINY | {"latent": 8, "vae_hidden": 8, "vae_steps": 3, "steps": 2, "val_every": 2}
    )
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
    with pytest.raises(NonFiniteLossError, match="step 1: vae rec is not finite"):
        lasium.train(
            related_config("lasium_omniglot", **TINY), CPU, data, val_eps, tmp_path / "m.pt", Recorder(), progress=False
        )
    assert not (tmp_path / "m.pt").exists()
