"""Item 1: a training stage killed with SIGKILL and started again continues from its last
checkpoint and ends with the same bytes as a run that was never interrupted (Meta-GMVAE, LASIUM,
SimCLR: all train in :func:`metagmvae.training.loop.fit`)."""

from __future__ import annotations

import copy
import json

import pytest
from stage_runs import finish, kill_when, make_project, start_stage, tree_bytes

from metagmvae.pipeline import episodes
from metagmvae.runtime import checkpoint
from metagmvae.schema.params import parse_section

STEPS = 60


@pytest.fixture(scope="module")
def omniglot_files(store, pipeline_params, tmp_path_factory) -> dict:
    eps = tmp_path_factory.mktemp("eps") / "episodes.h5"
    episodes.run("omniglot", parse_section(pipeline_params, "episodes", "omniglot"), store, eps)
    return {"data/omniglot/omniglot.h5": store, "data/omniglot/episodes.h5": eps}


def metatrain_params(pipeline_params: dict) -> dict:
    params = copy.deepcopy(pipeline_params)
    # checkpoints every 7 steps, log lines every 2: a resume must carry the unlogged loss sums
    params["metatrain"]["omniglot_5way"].update(steps=STEPS, checkpoint_every=7, log_every=2, val_every=25)
    return params


def metatrain_outputs(project) -> dict[str, bytes]:
    out = tree_bytes(project / "models" / "omniglot" / "omniglot_5way")
    for name in ("train", "val"):
        out[name] = (project / "plots" / "omniglot" / "curves" / f"omniglot_5way-{name}.csv").read_bytes()
    metrics = json.loads((project / "metrics" / "train" / "omniglot_5way.json").read_text())
    out["metrics"] = json.dumps({k: metrics[k] for k in ("steps", "best_val_accuracy")}).encode()
    return out


def test_metatrain_killed_and_restarted_ends_with_the_uninterrupted_bytes(omniglot_files, pipeline_params, tmp_path):
    params = metatrain_params(pipeline_params)
    whole = make_project(tmp_path / "whole", params, omniglot_files)
    finish(start_stage(whole, "metatrain@omniglot_5way"))

    killed = make_project(tmp_path / "killed", params, omniglot_files)
    proc = start_stage(killed, "metatrain@omniglot_5way")
    kill_when(proc, lambda: any((killed / ".resume").glob("*/state.pt")))
    (state_path,) = (killed / ".resume").glob("*/state.pt")
    state = checkpoint.load(state_path)  # the file on disk is complete, never half-written
    assert 0 < state["step"] < STEPS and (state["step"] % 7 == 0 or state["step"] % 25 == 0)
    assert not (killed / "models" / "omniglot" / "omniglot_5way").exists(), "no final output from a killed run"

    output = finish(start_stage(killed, "metatrain@omniglot_5way"))
    assert metatrain_outputs(killed) == metatrain_outputs(whole)
    assert not any((killed / ".resume").iterdir()), "resume state is removed once finished"
    assert f"resuming omniglot_5way from step {state['step']}" in output


def test_lasium_killed_in_its_second_phase_and_restarted_ends_with_the_uninterrupted_bytes(
    omniglot_files, pipeline_params, tmp_path
):
    """The related methods train in the same loop: LASIUM killed while meta-training its ProtoNet
    (its VAE phase finished and saved) continues from its last log line, not from step 0."""
    params = copy.deepcopy(pipeline_params)
    params["related"] = {"lasium_omniglot": params["related"]["lasium_omniglot"]}
    params["related"]["lasium_omniglot"].update(vae_steps=30, steps=60, log_every=7, val_every=25)
    stage = "related@lasium_omniglot"
    whole = make_project(tmp_path / "whole", params, omniglot_files)
    finish(start_stage(whole, stage))

    killed = make_project(tmp_path / "killed", params, omniglot_files)
    proc = start_stage(killed, stage)

    def protonet_state() -> bool:
        found = list((killed / ".resume").glob("*-protonet/state.pt"))
        return bool(found) and checkpoint.load(found[0])["step"] < 60

    kill_when(proc, protonet_state)
    (state_path,) = (killed / ".resume").glob("*-protonet/state.pt")
    step = checkpoint.load(state_path)["step"]
    assert 0 < step < 60 and (step % 7 == 0 or step % 25 == 0), step
    assert not (killed / "models" / "related" / "lasium_omniglot").exists()

    output = finish(start_stage(killed, stage))
    assert f"resuming lasium from step {step}" in output and "resuming lasium vae" not in output
    for rel in ("models/related/lasium_omniglot/model.pt", "metrics/related/lasium_omniglot.json"):
        assert (killed / rel).read_bytes() == (whole / rel).read_bytes(), rel
    episodes_file = "metrics/related/episodes/lasium_omniglot.json"
    assert (killed / episodes_file).read_bytes() == (whole / episodes_file).read_bytes()
    assert not any((killed / ".resume").iterdir()), "resume state is removed once finished"


@pytest.fixture(scope="module")
def simclr_files(mini_store) -> dict:
    return {"data/mini_imagenet/raw/images.h5": mini_store / "raw" / "images.h5"}


def test_simclr_killed_mid_epoch_and_restarted_ends_with_the_uninterrupted_bytes(
    simclr_files, pipeline_params, tmp_path
):
    params = copy.deepcopy(pipeline_params)
    # 100 images at batch 20: 5 steps per epoch, a checkpoint every 3 steps lands mid-epoch
    params["pretrain"]["mini_imagenet"].update(epochs=3, batch=20, checkpoint_every=3)
    whole = make_project(tmp_path / "whole", params, simclr_files)
    finish(start_stage(whole, "pretrain"))

    killed = make_project(tmp_path / "killed", params, simclr_files)
    proc = start_stage(killed, "pretrain")

    def mid_epoch_state() -> bool:
        found = list((killed / ".resume").glob("*/state.pt"))
        return bool(found) and checkpoint.load(found[0])["step"] % 5 != 0

    kill_when(proc, mid_epoch_state)
    (state_path,) = (killed / ".resume").glob("*/state.pt")
    step = checkpoint.load(state_path)["step"]
    assert 0 < step < 15
    assert not (killed / "models" / "mini_imagenet" / "simclr").exists()

    output = finish(start_stage(killed, "pretrain"))
    assert f"resuming simclr from step {step}" in output
    folder = ("models", "mini_imagenet", "simclr")
    assert tree_bytes(killed.joinpath(*folder)) == tree_bytes(whole.joinpath(*folder))
    final = [json.loads(p.joinpath("metrics", "train", "simclr.json").read_text()) for p in (whole, killed)]
    assert final[0]["final_loss"] == final[1]["final_loss"] and final[0]["epochs"] == final[1]["epochs"] == 3
