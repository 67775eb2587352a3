"""A team's MLflow server: a real `mlflow server` on 127.0.0.1 (SQLite backend, artifacts proxied
to a temporary folder); a tiny training and evaluation log to it through MLFLOW_TRACKING_URI and
the runs are read back through the MLflow client."""

import copy
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_TRAINING

from metagmvae.pipeline import episodes, evaluate, metatrain
from metagmvae.schema.params import parse_section

mlflow = pytest.importorskip("mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    cmd += ["--artifacts-destination", str(folder / "artifacts"), "--workers", "1"]
    with open(folder / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_healthy(url, proc, folder / "server.log")
            yield url, folder
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_until_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read().strip() == b"OK":
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("mlflow server did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.5)


def test_training_and_evaluation_runs_land_on_the_server(server, store, tmp_path, monkeypatch):
    url, folder = server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("METAGMVAE_TRACKING", "on")
    params = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
    params["episodes"]["omniglot"].update(
        val={"episodes": 4, "ways": [5], "shots": [1]}, test={"episodes": 6, "ways": [5], "shots": [1]}
    )
    params["metatrain"]["omniglot_5way"].update(TINY_TRAINING, val_shots=[1])
    params["evaluate"]["omniglot"].update(
        models={"omniglot_5way": [1]}, cross_way={}, test_samples=2, episodes_per_call=3, precision="fp32"
    )
    episodes.run("omniglot", parse_section(params, "episodes", "omniglot"), store, tmp_path / "episodes.h5")
    plots = tmp_path / "plots"
    trained = metatrain.Outputs(
        tmp_path / "models" / "omniglot_5way",
        plots / "omniglot_5way",
        plots / "t.csv",
        plots / "v.csv",
        tmp_path / "t.json",
    )
    cfg = parse_section(params, "metatrain", "omniglot_5way")
    metatrain.run("omniglot_5way", cfg, store, tmp_path / "episodes.h5", trained, tmp_path / "resume")
    scored = evaluate.Outputs(
        tmp_path / "o.json", plots / "accuracy.png", plots / "embedding.png", plots / "accuracy_by_shot.csv"
    )
    cfg = parse_section(params, "evaluate", "omniglot")
    evaluate.run("omniglot", cfg, store, tmp_path / "episodes.h5", tmp_path / "models", scored)

    client = mlflow.MlflowClient(tracking_uri=url)
    runs = client.search_runs([client.get_experiment_by_name("meta-gmvae").experiment_id])
    by_stage = {r.data.tags["stage"]: r for r in runs}
    assert set(by_stage) == {"metatrain", "evaluate"} and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", r.data.tags["git_commit"])
    train_run, eval_run = by_stage["metatrain"], by_stage["evaluate"]
    assert train_run.data.params["lr"] == "0.001" and train_run.data.params["steps"] == "6"
    assert [m.step for m in client.get_metric_history(train_run.info.run_id, "train/loss")] == [2, 4, 6]
    assert {"history.json", "summary.json", "plots"} <= {a.path for a in client.list_artifacts(train_run.info.run_id)}
    assert 0 <= eval_run.data.metrics["meta_gmvae/5way_1shot/accuracy"] <= 100
    plots = {a.path for a in client.list_artifacts(eval_run.info.run_id, "plots")}
    assert {"plots/accuracy.png", "plots/embedding.png", "plots/accuracy_by_shot.csv"} <= plots
    # artifacts went through the server into its own folder, not into the working directory
    stored = {p.name for p in (folder / "artifacts").rglob("*") if p.is_file()}
    assert {"history.json", "embedding.png", "o.json"} <= stored
    local = client.download_artifacts(eval_run.info.run_id, "o.json", str(tmp_path / "download"))
    assert Path(local).read_bytes() == (tmp_path / "o.json").read_bytes()
