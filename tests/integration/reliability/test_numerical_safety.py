"""Item 4: NaN/Inf stop training with the step and the term, keeping the last good checkpoint;
EM stays finite on adversarial inputs (duplicates, empty components, huge magnitudes)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import yaml
from conftest import REPO, TINY_TRAINING

from metagmvae.data.stores import load_split
from metagmvae.methods import meta_gmvae as train
from metagmvae.methods import simclr
from metagmvae.models import em
from metagmvae.pipeline import episodes, pretrain
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import make_runtime
from metagmvae.runtime.tracking import Run
from metagmvae.schema.params import parse_section
from metagmvae.training.loop import NonFiniteLossError

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="module")
def setup(store, tmp_path_factory):
    params = copy.deepcopy(PARAMS)
    params["episodes"]["omniglot"]["val"] = {"episodes": 2, "ways": [5], "shots": [1]}
    params["episodes"]["omniglot"]["test"] = {"episodes": 2, "ways": [5], "shots": [1]}
    eps_path = tmp_path_factory.mktemp("eps") / "episodes.h5"
    sets = episodes.run("omniglot", parse_section(params, "episodes", "omniglot"), store, eps_path)
    params["metatrain"]["omniglot_5way"].update(TINY_TRAINING, steps=8, val_shots=[1], checkpoint_every=3)
    cfg = parse_section(params, "metatrain", "omniglot_5way")
    pool = torch.from_numpy(load_split("omniglot", "train", store)).flatten(0, 1)
    val = torch.from_numpy(load_split("omniglot", "val", store))
    return cfg, make_runtime("cpu", "fp32", False, convolutional=True), pool, val, {1: sets[("val", 5, 1)]}


def poison_step(monkeypatch, step: int, where: str) -> None:
    """Make the loss (``where="loss"``) or the gradients (``"gradient"``) non-finite at ``step``."""
    real = train.MetaGMVAE.loss
    calls = {"n": 0}

    def loss(self, *args, **kwargs):
        calls["n"] += 1
        out = real(self, *args, **kwargs)
        if calls["n"] == step:
            if where == "loss":
                return dataclasses.replace(out, kl=out.kl * float("nan"), loss=out.loss * float("nan"))
            out.loss.register_hook(lambda grad: grad * float("inf"))
        return out

    monkeypatch.setattr(train.MetaGMVAE, "loss", loss)


@pytest.mark.parametrize("where,term", [("loss", r"(loss|kl)"), ("gradient", "gradient norm")])
def test_non_finite_step_stops_with_step_and_term_and_keeps_the_last_good_checkpoint(
    setup, tmp_path, monkeypatch, where, term
):
    cfg, rt, pool, val, val_eps = setup
    poison_step(monkeypatch, 5, where)
    with pytest.raises(NonFiniteLossError, match=rf"step 5: {term} is not finite"):
        train.train(cfg, rt, pool, val, val_eps, tmp_path / "m", tmp_path / "r", Run(None), progress=False)
    assert not (tmp_path / "m").exists()
    (state_path,) = (tmp_path / "r").glob("*/state.pt")
    state = checkpoint.load(state_path)
    assert state["step"] == 3  # the last checkpoint before the bad step, intact
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_simclr_non_finite_loss_names_the_step(tiny_mini_packed, mini_store, tmp_path, monkeypatch):
    from conftest import tiny_mini_params

    params = tiny_mini_params(yaml.safe_load((REPO / "params.yaml").read_text()), tiny_mini_packed)
    real = simclr.nt_xent
    calls = {"n": 0}

    def nt_xent(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(simclr, "nt_xent", nt_xent)
    with pytest.raises(NonFiniteLossError, match=r"step 3: pretrain/loss is not finite"):
        cfg = parse_section(params, "pretrain", "mini_imagenet")
        pretrain.run(
            "mini_imagenet", cfg, mini_store / "raw" / "images.h5", tmp_path / "s", tmp_path / "m.json", tmp_path
        )
    assert not (tmp_path / "s").exists() and not (tmp_path / "m.json").exists()


def finite_mixture(pi: torch.Tensor, mu: torch.Tensor) -> None:
    assert torch.isfinite(pi).all() and torch.isfinite(mu).all()
    assert torch.allclose(pi.sum(-1), torch.ones(pi.shape[0]), atol=1e-5)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6, 1e15])
def test_unsupervised_em_is_finite_on_adversarial_inputs(scale):
    gen = torch.Generator().manual_seed(0)
    # every point identical: every component starts on the same point and stays there
    same = torch.full((2, 40, 8), 3.0) * scale
    pi, mu = em.unsupervised_em(same, 5, 10, gen)
    finite_mixture(pi, mu)
    assert torch.allclose(mu, same[:, :5], rtol=1e-5)
    # two clusters and 5 components: some components end with no responsibility at all
    two = torch.cat([torch.zeros(1, 20, 8), torch.ones(1, 20, 8)], 1) * scale
    pi, mu = em.unsupervised_em(two, 5, 10, gen)
    finite_mixture(pi, mu)
    logp = em.gmm_log_density(two, pi, mu)
    assert torch.isfinite(logp).all()
    # a point far from every component: the log-density is very negative, not -inf or NaN
    far = torch.full((1, 1, 8), 1e3)
    assert torch.isfinite(em.gmm_log_density(far, pi[:1], mu[:1] / scale)).all()


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_semi_supervised_em_is_finite_on_adversarial_inputs(scale):
    # duplicated support points (zero variance), a query far from everything (it drags one class
    # mean with it: a modelling fact, not a numerical failure), a class that no query belongs to
    zs = torch.tensor([[[1.0, 2.0], [1.0, 2.0], [5.0, 5.0], [5.0, 5.0], [-3.0, 0.0], [-3.0, 0.0]]]) * scale
    ys = torch.tensor([[0, 0, 1, 1, 2, 2]])
    zq = torch.tensor([[[1.0, 2.0], [5.0, 5.0], [1e4, -1e4]]]) * scale
    probs = em.semi_supervised_em(zs, ys, zq, 3, iters=10)
    assert torch.isfinite(probs).all()
    assert torch.allclose(probs.sum(-1), torch.ones(1, 3))
