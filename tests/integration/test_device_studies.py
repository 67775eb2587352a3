"""``scripts/device_studies.sh`` end to end on the CPU (the code path a lent GPU runs, with a few
steps): the runs it is given train, and their record is merged with the committed one."""

import copy
import os
import subprocess
import sys

import yaml
from conftest import REPO

from metagmvae.pipeline import episodes
from metagmvae.runtime.io import read_json
from metagmvae.schema.params import parse_section


def test_device_studies_trains_the_runs_it_is_given_and_keeps_the_committed_ones(store, tmp_path):
    params = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
    params["episodes"]["omniglot"]["val"] = {"episodes": 4, "ways": [5], "shots": [1, 5]}
    params["episodes"]["omniglot"]["test"] = {"episodes": 2, "ways": [5], "shots": [1]}
    episodes.run("omniglot", parse_section(params, "episodes", "omniglot"), store, tmp_path / "episodes.h5")
    env = os.environ | {
        "PYTHON": sys.executable,
        "OFFICIAL": str(tmp_path / "no-official-checkout"),  # so no parity runs
        "ABLATION": "m100:5",
        "RUNS": str(tmp_path / "runs"),
        "STORE": str(store),
        "EPISODES": str(tmp_path / "episodes.h5"),
        "RAW": str(store.parent / "raw"),
    }
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "device_studies.sh"), str(out), "4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    log = (out / "studies.log").read_text()
    assert "parity runs: none" in log and "ablation runs: m100:5" in log and "0 of 1 runs failed" in log
    record = read_json(out / "fall_ablation.json")
    run = record["runs"]["m100"]["5"]
    assert run["steps"] == 4 and run["val_step"] == [2, 4] and len(run["val_1shot"]) == 2
    assert 0 < run["min_component"] <= 100 * 32 / 5  # M 100 points x S 32 samples over K 5 components
    committed = REPO / "benchmarks" / "fall_ablation.json"
    for variant, seeds in (read_json(committed)["runs"] if committed.exists() else {}).items():
        for seed, committed_run in seeds.items():
            assert record["runs"][variant][seed] == committed_run  # merged, not replaced
    assert not (out / "official_dynamics.png").exists()  # no parity run, no parity report
