"""The training loop: resume after an interruption, checkpoint selection, non-finite losses."""

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, TINY_TRAINING

from metagmvae.data.episodes import sample_episodes
from metagmvae.data.stores import load_split
from metagmvae.methods import meta_gmvae as train
from metagmvae.models import trained
from metagmvae.pipeline import episodes
from metagmvae.runtime import checkpoint
from metagmvae.runtime.device import Runtime, make_runtime
from metagmvae.runtime.tracking import Run
from metagmvae.schema.metatrain import TrainConfig
from metagmvae.schema.params import parse_section
from metagmvae.training.loop import NonFiniteLossError, RunningMinima

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="module")
def setup(store, tmp_path_factory):
    params = copy.deepcopy(PARAMS)
    params["episodes"]["omniglot"]["val"] = {"episodes": 4, "ways": [5], "shots": [1, 5]}
    params["episodes"]["omniglot"]["test"] = {"episodes": 4, "ways": [5], "shots": [1]}
    path = tmp_path_factory.mktemp("eps") / "episodes.h5"
    sets = episodes.run("omniglot", parse_section(params, "episodes", "omniglot"), store, path)
    params["metatrain"]["omniglot_5way"].update(TINY_TRAINING)
    cfg = parse_section(params, "metatrain", "omniglot_5way")
    rt = make_runtime("cpu", "fp32", True, convolutional=True)
    pool = torch.from_numpy(load_split("omniglot", "train", store)).flatten(0, 1)
    val = torch.from_numpy(load_split("omniglot", "val", store))
    val_eps = {shot: sets[("val", 5, shot)] for shot in (1, 5)}
    return cfg, rt, pool, val, val_eps


FEATURE_MODEL = {"kind": "features", "input_dim": 16, "latent": 4, "hidden": 32, "heads": 2, "blocks": 1}


def clustered_features(classes: int, per_class: int, seed: int, scale: float) -> torch.Tensor:
    """``[C, n, 16]`` non-negative features: a random prototype per class (uniform in [0, scale])
    plus noise of standard deviation 0.15, through a ReLU like SimCLR features."""
    gen = torch.Generator().manual_seed(seed)
    prototypes = scale * torch.rand(classes, 1, 16, generator=gen)
    return (prototypes + 0.15 * torch.randn(classes, per_class, 16, generator=gen)).relu()


def feature_config(**overrides) -> TrainConfig:
    """A Meta-GMVAE on 16-d features, small enough to train for dozens of steps in a second."""
    cfg = dict(
        dataset="mini_imagenet",
        model=FEATURE_MODEL,
        way=5,
        batch=2,
        points=25,
        samples=4,
        samples_decoder=4,
        train_em_iters=5,
        fix_pi=False,
        lr=3e-3,
        lr_schedule="constant",
        weight_decay=0.0,
        steps=6,
        val_every=2,
        val_shots=[1, 5],
        val_samples=4,
        val_em_iters=5,
        episodes_per_call=20,
        checkpoint_every=2,
        log_every=2,
        seed=0,
        device="cpu",
        precision="fp32",
        channels_last=False,
    )
    return TrainConfig(**(cfg | overrides))


@pytest.fixture
def features():
    """``(cfg, rt, pool, val, val_episodes)`` of :func:`feature_config` on clustered features:
    20 training classes pooled without labels, 10 validation classes, 5-way 1- and 5-shot."""
    rt = Runtime(torch.device("cpu"), "fp32", channels_last=False)
    pool = clustered_features(20, 20, seed=1, scale=5.0).flatten(0, 1)
    val = clustered_features(10, 20, seed=2, scale=5.0)
    val_eps = {shot: sample_episodes(np.random.default_rng(shot), 20, 10, 20, 5, shot, 5) for shot in (1, 5)}
    return feature_config(), rt, pool, val, val_eps


def run_training(setup, out_dir, resume_root, cfg=None):
    base, rt, pool, val, val_eps = setup
    return train.train(cfg or base, rt, pool, val, val_eps, out_dir, resume_root, Run(None), progress=False)


def weights(path):
    return checkpoint.load(path)["model"]


def crash_at_call(n: int, sampler):
    """``sampler`` that raises KeyboardInterrupt (a simulated kill) on its ``n``-th call."""
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated kill")
        return sampler(*args, **kwargs)

    return crashing


def test_interrupted_run_resumes_to_the_same_result(setup, tmp_path, monkeypatch):
    reference = run_training(setup, tmp_path / "ref", tmp_path / "resume_ref")

    real_sampler = train.sample_training_batch
    monkeypatch.setattr(train, "sample_training_batch", crash_at_call(5, real_sampler))
    with pytest.raises(KeyboardInterrupt):
        run_training(setup, tmp_path / "model", tmp_path / "resume")
    assert not (tmp_path / "model").exists(), "no final output from an interrupted run"
    (state,) = (tmp_path / "resume").glob("*/state.pt")
    assert checkpoint.load(state)["step"] == 4  # last checkpoint before the crash
    monkeypatch.setattr(train, "sample_training_batch", real_sampler)

    resumed = run_training(setup, tmp_path / "model", tmp_path / "resume")
    assert resumed["steps"] == reference["steps"] == 6
    assert resumed["best_val_accuracy"] == reference["best_val_accuracy"]
    for shot in (1, 5):
        a, b = weights(tmp_path / "ref" / f"best_{shot}shot.pt"), weights(tmp_path / "model" / f"best_{shot}shot.pt")
        assert all(torch.equal(a[k], b[k]) for k in a)
    # every output file, checkpoints included, is byte-identical to the uninterrupted run's
    names = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert names == ["best_1shot.pt", "best_5shot.pt", "history.json", "summary.json"]
    for name in names:
        assert (tmp_path / "ref" / name).read_bytes() == (tmp_path / "model" / name).read_bytes(), name
    assert not list((tmp_path / "resume").iterdir()), "resume state removed after finishing"


def test_run_killed_after_its_last_step_only_writes_the_outputs(setup, tmp_path, monkeypatch):
    """All steps done and saved, killed before the outputs were moved into place: the restart
    trains nothing and writes the same bytes as an uninterrupted run."""
    run_training(setup, tmp_path / "ref", tmp_path / "resume_ref")

    def killed(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "atomic_dir", killed)
    with pytest.raises(KeyboardInterrupt):
        run_training(setup, tmp_path / "model", tmp_path / "resume")
    monkeypatch.undo()
    monkeypatch.setattr(train, "episode_losses", lambda *a, **k: pytest.fail("a finished run trained again"))
    summary = run_training(setup, tmp_path / "model", tmp_path / "resume")
    assert summary["steps"] == setup[0].steps
    for name in ("best_1shot.pt", "best_5shot.pt", "history.json", "summary.json"):
        assert (tmp_path / "ref" / name).read_bytes() == (tmp_path / "model" / name).read_bytes(), name


def test_progress_bar_in_a_log_redraws_only_around_validation_lines(setup, tmp_path, capsys):
    """Not a terminal (a DVC or CI log): the bar is drawn at the start and the end and redrawn
    below each validation line; the loss postfix of every log step does not redraw it."""
    base, rt, pool, val, val_eps = setup
    train.train(base, rt, pool, val, val_eps, tmp_path / "m", tmp_path / "r", Run(None), progress=True)
    out = capsys.readouterr()
    validations = out.out.count(": validation ")
    assert validations == base.steps // base.val_every == 2
    frames = out.err.count("metatrain m:")
    assert frames == 2 + validations, f"{frames} progress-bar frames for {base.steps} steps"


def test_training_lowers_the_loss_and_lifts_accuracy_well_above_the_untrained_model(features, tmp_path):
    """80 steps on unlabeled clustered features: the selected model's loss on a fixed batch is
    under half the untrained model's, and on classes seen neither in training nor in validation it
    is right far more often (measured: loss 573 -> 143, 5-way 1-shot 66.3% -> 98.0%)."""
    _, rt, _, _, _ = features
    cfg = feature_config(lr=1e-2, steps=80, val_every=20, log_every=20, checkpoint_every=20, val_shots=[1])
    pool = clustered_features(20, 20, seed=1, scale=10.0).flatten(0, 1)
    val = clustered_features(10, 20, seed=2, scale=10.0)
    test = clustered_features(10, 20, seed=3, scale=10.0)
    episodes = {1: sample_episodes(np.random.default_rng(0), 40, 10, 20, 5, 1, 5)}
    untrained, _, _ = train.start_training(cfg, rt)
    batch = clustered_features(10, 5, seed=4, scale=10.0).view(2, 25, 16)

    def loss_and_accuracy(model):
        loss = model.loss(batch, components=5, samples=4, em_iters=5, generator=torch.Generator().manual_seed(0))
        return loss.loss.item(), train.validation_accuracy(model, cfg, rt, test, episodes, seed=5)[1]

    loss_before, acc_before = loss_and_accuracy(untrained)
    train.train(cfg, rt, pool, val, episodes, tmp_path / "m", tmp_path / "r", Run(None), progress=False)
    selected, _ = trained.load_model(tmp_path / "m" / "best_1shot.pt", rt)
    loss_after, acc_after = loss_and_accuracy(selected)
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert history["loss"][-1] < 0.5 * history["loss"][0], history["loss"]
    assert loss_after < 0.5 * loss_before, (loss_before, loss_after)
    assert acc_after > max(75.0, acc_before + 25.0), (acc_before, acc_after)  # chance: 20%


def test_changed_config_does_not_resume_foreign_state(features, tmp_path, monkeypatch, capsys):
    """A run interrupted under one configuration leaves its state; a run of another configuration
    (twice the learning rate) in the same places starts from step 1 and gives exactly what it
    gives alone, and the first run's state is left for it to resume."""
    cfg, rt, pool, val, val_eps = features
    other = cfg.model_copy(update={"lr": cfg.lr * 2})
    assert other.fingerprint() != cfg.fingerprint()
    alone = tmp_path / "alone" / "m"
    train.train(other, rt, pool, val, val_eps, alone, tmp_path / "r_alone", Run(None), progress=False)

    real_sampler = train.sample_training_batch
    monkeypatch.setattr(train, "sample_training_batch", crash_at_call(5, real_sampler))
    with pytest.raises(KeyboardInterrupt):
        train.train(cfg, rt, pool, val, val_eps, tmp_path / "m", tmp_path / "r", Run(None), progress=False)
    monkeypatch.setattr(train, "sample_training_batch", real_sampler)
    (foreign,) = (tmp_path / "r").glob("*/state.pt")
    assert checkpoint.load(foreign)["step"] == 4
    foreign_bytes = foreign.read_bytes()
    capsys.readouterr()

    train.train(other, rt, pool, val, val_eps, tmp_path / "m", tmp_path / "r", Run(None), progress=False)
    assert "resuming" not in capsys.readouterr().out
    for name in ("best_1shot.pt", "best_5shot.pt", "history.json", "summary.json"):
        assert (tmp_path / "m" / name).read_bytes() == (alone / name).read_bytes(), name
    assert foreign.read_bytes() == foreign_bytes  # the interrupted run's state is untouched


def test_the_selected_checkpoint_holds_the_weights_and_step_of_the_best_validation(features, tmp_path, monkeypatch):
    """A forced non-monotone validation curve, with a tie: each shot's checkpoint holds the weights
    the model had at its best step (the earlier one of a tie), that step and that accuracy."""
    cfg, rt, pool, val, val_eps = features
    curve = {1: [30.0, 50.254, 50.254], 5: [60.0, 40.0, 50.0]}  # validations at steps 2, 4, 6
    weights_at = {}
    logged = []

    class RecordingRun(Run):
        def log_metrics(self, metrics, step=None):
            logged.append((step, dict(metrics)))

    def scripted_validation(model, cfg_, rt_, val_data, val_episodes, seed):
        step = seed - cfg.seed
        weights_at[step] = {k: t.detach().clone() for k, t in model.state_dict().items()}
        return {shot: accs[len(weights_at) - 1] for shot, accs in curve.items()}

    monkeypatch.setattr(train, "validation_accuracy", scripted_validation)
    summary = train.train(cfg, rt, pool, val, val_eps, tmp_path / "m", tmp_path / "r", RecordingRun(), progress=False)
    assert sorted(weights_at) == [2, 4, 6]
    expected = {  # rounded to 0.01 points
        "best_val_accuracy": {"1shot": 50.25, "5shot": 60.0},
        "fingerprint": cfg.fingerprint(),
        "steps": cfg.steps,
        "val_shots": [1, 5],
    }
    assert json.loads((tmp_path / "m" / "summary.json").read_text()) == expected  # no wall times: stable bytes
    assert summary["best_val_accuracy"] == expected["best_val_accuracy"]
    validations = [(step, m) for step, m in logged if any(k.startswith("val/") for k in m)]
    assert validations == [
        (step, {"val/1shot_accuracy": curve[1][i], "val/5shot_accuracy": curve[5][i]})
        for i, step in enumerate([2, 4, 6])
    ]
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert history["val"] == {f"{s}shot": accs for s, accs in curve.items()} and history["val_step"] == [2, 4, 6]
    for shot, best_step in ((1, 4), (5, 2)):
        state = checkpoint.load(tmp_path / "m" / f"best_{shot}shot.pt")
        assert (state["step"], state["val_accuracy"]) == (best_step, max(curve[shot]))
        assert state["config"] == cfg.model_dump()
        for name, tensor in weights_at[best_step].items():
            assert torch.equal(state["model"][name], tensor), (shot, name)
        last = weights_at[6]
        assert any(not torch.equal(state["model"][k], last[k]) for k in last), "the weights moved between validations"


def test_best_checkpoint_per_shot_and_history(setup, tmp_path):
    summary = run_training(setup, tmp_path / "m", tmp_path / "r")
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert history["step"] == [2, 4, 6] and history["val_step"] == [3, 6]
    cfg = setup[0]
    points = cfg.points * cfg.samples  # MC samples in one episode's EM
    assert len(history["min_component"]) == 3
    assert all(0.0 <= size <= points / cfg.way for size in history["min_component"]), history
    for shot in (1, 5):
        state = checkpoint.load(tmp_path / "m" / f"best_{shot}shot.pt")
        assert state["val_accuracy"] == max(history["val"][f"{shot}shot"])
        assert round(state["val_accuracy"], 2) == summary["best_val_accuracy"][f"{shot}shot"]
    assert trained.checkpoint_for(tmp_path / "m", 5).name == "best_5shot.pt"
    assert trained.checkpoint_for(tmp_path / "m", 20).name == "best_1shot.pt"


def test_nan_loss_stops_with_step_and_term(setup, tmp_path, monkeypatch):
    cfg, rt, pool, val, val_eps = setup
    bad_pool = pool.clone()
    bad_pool[:] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"step 1: (loss|rec|kl) is not finite"):
        train.train(cfg, rt, bad_pool, val, val_eps, tmp_path / "m", tmp_path / "r", Run(None), progress=False)
    assert not (tmp_path / "m").exists()


def test_running_minimum_keeps_the_lowest_value_since_the_last_pop_and_survives_a_resume():
    smallest = RunningMinima()
    for size in (9.0, 0.5, torch.tensor(4.0)):
        smallest.add(size=size)
    resumed = RunningMinima()
    resumed.load_state_dict(smallest.state_dict())
    resumed.add(size=2.0)
    assert resumed.pop("train") == {"train/size": 0.5}
    resumed.add(size=7.0)
    assert resumed.pop("train") == {"train/size": 7.0}, "a pop starts over"
