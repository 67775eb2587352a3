"""MLflow tracking: the store location, through DVC temporary copies, and what a run records."""

import re

import pytest

from metagmvae.runtime import tracking
from metagmvae.runtime.io import project_root


def test_project_root_sees_through_dvc_temp_copies(tmp_path):
    temp_copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    temp_copy.mkdir(parents=True)
    assert project_root(temp_copy) == (tmp_path / "repo").resolve()
    assert project_root(tmp_path / "repo") == (tmp_path / "repo").resolve()


def test_tracking_uri_defaults_to_an_absolute_sqlite_file_and_env_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking.tracking_uri(tmp_path) == "http://mlflow.example:5000"


def test_run_from_a_dvc_temp_copy_lands_in_the_root_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    temp_copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpxyz"
    temp_copy.mkdir(parents=True)
    (temp_copy / "note.txt").write_text("artifact")
    monkeypatch.chdir(temp_copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("METAGMVAE_TRACKING", "on")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    with tracking.start_run("metatrain", "unit", {"model": {"latent": 64}, "lr": 0.001}) as run:
        run.log_metrics({"train/loss": 1.5}, step=3)
        run.log_artifact(temp_copy / "note.txt")
    assert (tmp_path / "mlflow.db").exists() and not (temp_copy / "mlflow.db").exists()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("meta-gmvae").experiment_id])
    assert found.data.params == {"model.latent": "64", "lr": "0.001"}
    assert found.data.metrics == {"train/loss": 1.5}
    assert found.data.tags["stage"] == "metatrain" and found.data.tags["dvc_experiment"] == "exp-1"
    assert re.fullmatch(r"([0-9a-f]{40}(-dirty)?|unknown)", found.data.tags["git_commit"])
    assert [a.path for a in client.list_artifacts(found.info.run_id)] == ["note.txt"]
    assert (tmp_path / "mlartifacts").is_dir()


def test_tracking_off_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METAGMVAE_TRACKING", "off")
    with tracking.start_run("evaluate", "x", {"a": 1}) as run:
        run.log_metrics({"m": 1.0})
    assert not run.active and list(tmp_path.iterdir()) == []
