"""Item 7: two experiments at once (two queue workers) on one fresh SQLite MLflow store: both
runs are complete in the store, and neither changes the other's outputs. A start barrier makes
both processes open their runs together, and the test checks that the runs overlapped."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from conftest import REPO
from stage_runs import finish, make_project, stage_env, start_stage, tree_bytes

from metagmvae.pipeline import episodes
from metagmvae.schema.params import parse_section

STEPS, LOG_EVERY = 12, 2
BARRIER_CODE = Path(__file__).parent / "barrier"  # its sitecustomize.py holds both runs until both have started


@pytest.fixture(scope="module")
def omniglot_files(store, pipeline_params, tmp_path_factory) -> dict:
    eps = tmp_path_factory.mktemp("eps") / "episodes.h5"
    episodes.run("omniglot", parse_section(pipeline_params, "episodes", "omniglot"), store, eps)
    return {"data/omniglot/omniglot.h5": store, "data/omniglot/episodes.h5": eps}


def model_params(pipeline_params: dict, seed: int) -> dict:
    params = copy.deepcopy(pipeline_params)
    params["metatrain"]["omniglot_5way"].update(steps=STEPS, log_every=LOG_EVERY, val_every=6, seed=seed)
    return params


def test_two_concurrent_runs_are_both_complete_and_independent(omniglot_files, pipeline_params, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
    (tmp_path / "shared").mkdir()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = stage_env(
        METAGMVAE_TRACKING="on",
        MLFLOW_TRACKING_URI=uri,
        PYTHONPATH=os.pathsep.join([str(BARRIER_CODE), str(REPO)]),
        METAGMVAE_BARRIER=str(barrier),
        METAGMVAE_BARRIER_PARTIES="2",
    )
    projects = {
        seed: make_project(tmp_path / f"seed{seed}", model_params(pipeline_params, seed), omniglot_files)
        for seed in (0, 1)
    }
    procs = [start_stage(project, "metatrain@omniglot_5way", env=env) for project in projects.values()]
    for proc in procs:  # both wait at the barrier, then race for the new store
        finish(proc)
    spans = [json.loads(p.read_text()) for p in sorted(barrier.glob("*.json"))]
    assert len(spans) == 2, "both runs passed the start barrier"
    assert max(s["entered"] for s in spans) < min(s["left"] for s in spans), f"the runs did not overlap: {spans}"

    client = MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "meta-gmvae"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["stage"] == "metatrain"
        assert run.data.tags["git_commit"]
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in history] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"history.json", "summary.json", "omniglot_5way.json", "plots"} <= artifacts

    # each project's outputs are exactly those of the same run alone, untracked
    alone = make_project(tmp_path / "alone", model_params(pipeline_params, 0), omniglot_files)
    finish(start_stage(alone, "metatrain@omniglot_5way"))
    folder = ("models", "omniglot", "omniglot_5way")
    assert tree_bytes(projects[0].joinpath(*folder)) == tree_bytes(alone.joinpath(*folder))
    assert tree_bytes(projects[0].joinpath(*folder)) != tree_bytes(projects[1].joinpath(*folder))
