"""The training loop: resume after an interruption, checkpoint selection, non-finite losses."""

import copy
import json

import pytest
import torch
import yaml
from conftest import REPO, TINY_TRAINING

from metagmvae import checkpoint, train
from metagmvae.data.stores import load_split
from metagmvae.loop import NonFiniteLossError
from metagmvae.models import trained
from metagmvae.pipeline import episodes
from metagmvae.runtime import make_runtime
from metagmvae.tracking import Run
from metagmvae.validate import parse_section

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


def run_training(setup, out_dir, resume_root, cfg=None):
    base, rt, pool, val, val_eps = setup
    return train.train(cfg or base, rt, pool, val, val_eps, out_dir, resume_root, Run(None), progress=False)


def weights(path):
    return checkpoint.load(path)["model"]


def test_interrupted_run_resumes_to_the_same_result(setup, tmp_path, monkeypatch):
    reference = run_training(setup, tmp_path / "ref", tmp_path / "resume_ref")

    real_sampler = train.sample_training_batch
    calls = {"n": 0}

    def crash_at_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated kill")
        return real_sampler(*args, **kwargs)

    monkeypatch.setattr(train, "sample_training_batch", crash_at_step_5)
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
    monkeypatch.setattr(train, "train_step", lambda *a, **k: pytest.fail("a finished run trained again"))
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


def test_changed_config_does_not_resume_foreign_state(setup, tmp_path):
    cfg = setup[0]
    other = cfg.model_copy(update={"lr": cfg.lr * 2})
    assert other.fingerprint() != cfg.fingerprint()


def test_best_checkpoint_per_shot_and_history(setup, tmp_path):
    summary = run_training(setup, tmp_path / "m", tmp_path / "r")
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert history["step"] == [2, 4, 6] and history["val_step"] == [3, 6]
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
