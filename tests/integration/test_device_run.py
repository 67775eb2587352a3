"""``scripts/device_run.sh`` end to end on the CPU (the code path a lent GPU runs, with the paper
profile shrunk to seconds): a first call whose wall-clock budget runs out, a second that continues
from the folder the first left, and the record both write."""

import copy
import json
import os
import subprocess
import sys

import torch
import yaml
from conftest import REPO, TINY_TRAINING

from metagmvae.pipeline import episodes
from metagmvae.runtime import checkpoint
from metagmvae.schema.params import parse_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
SECTION = "metatrain.omniglot_5way"


def device_run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHON": sys.executable} | (env_extra or {})
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "device_run.sh"), *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_device_run_trains_the_paper_profile_in_two_calls_and_tests_it(store, tmp_path):
    params = copy.deepcopy(PARAMS)
    params["episodes"]["omniglot"]["val"] = {"episodes": 4, "ways": [5], "shots": [1, 5]}
    params["episodes"]["omniglot"]["test"] = {"episodes": 6, "ways": [5], "shots": [1, 5]}
    episodes.run("omniglot", parse_section(params, "episodes", "omniglot"), store, tmp_path / "episodes.h5")
    tiny = [f"--set={SECTION}.{k}={v}" for k, v in TINY_TRAINING.items() if k != "precision"]
    tiny += ["--set=evaluate.omniglot.test_samples=2", "--set=evaluate.omniglot.episodes_per_call=3"]
    data = ["--store", str(store), "--episodes", str(tmp_path / "episodes.h5"), "--no-bench", *tiny]

    first = device_run(str(tmp_path / "call1"), *data, "--budget-minutes", "0")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "wall-clock budget of 0 s spent at step 1" in first.stdout
    metrics1 = json.loads((tmp_path / "call1" / "metrics.json").read_text())
    assert metrics1["profile"] == "paper"
    assert (metrics1["finished"], metrics1["steps_done"], metrics1["steps"]) == (False, 1, TINY_TRAINING["steps"])
    assert metrics1["test"] == {}  # no validation yet, so no checkpoint to test
    assert metrics1["runtime"]["precision"] == "fp32"  # stated by the paper profile, not `auto`

    second = device_run(str(tmp_path / "call2"), str(tmp_path / "call1"), *data, "--budget-minutes", "30")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming model from step 1" in second.stdout
    metrics2 = json.loads((tmp_path / "call2" / "metrics.json").read_text())
    assert (metrics2["finished"], metrics2["steps_done"]) == (True, TINY_TRAINING["steps"])
    assert set(metrics2["test"]) == {"5way_1shot", "5way_5shot"}
    for result in metrics2["test"].values():
        assert result["episodes"] == 6 and 0.0 <= result["accuracy"] <= 100.0
    history = json.loads((tmp_path / "call2" / "history.json").read_text())
    assert history["val_step"] == [3, 6] and history["step"] == [2, 4, 6]
    best = checkpoint.load(tmp_path / "call2" / "model" / "best_1shot.pt")
    assert best["config"]["batch"] == TINY_TRAINING["batch"] and best["step"] in (3, 6)
    assert all(torch.isfinite(t).all() for t in best["model"].values() if t.is_floating_point())
