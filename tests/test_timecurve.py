"""Accuracy against wall time: snapshots of the same run the metatrain stage makes, a JSON record
and a figure."""

import copy
import json

import torch
import yaml
from conftest import REPO, TINY_TRAINING

from metagmvae import checkpoint, timecurve, train
from metagmvae.data.stores import load_split
from metagmvae.pipeline import episodes
from metagmvae.pipeline.metatrain import train_config
from metagmvae.runtime import make_runtime
from metagmvae.tracking import Run

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def tiny_params(cosine: bool = True) -> dict:
    params = copy.deepcopy(PARAMS)
    params["episodes"]["omniglot"]["val"] = {"episodes": 4, "ways": [5], "shots": [1]}
    params["episodes"]["omniglot"]["test"] = {"episodes": 6, "ways": [5], "shots": [1, 5]}
    params["metatrain"]["omniglot_5way"].update(TINY_TRAINING, lr_schedule="cosine" if cosine else "constant")
    params["evaluate"]["omniglot"].update(samples=2, episodes_per_call=3, precision="fp32")
    return params


def test_final_snapshot_is_the_metatrain_stage_model(store, tmp_path):
    """Same seeds, schedule and steps: the curve measures the model the pipeline trains."""
    params = tiny_params()
    params["metatrain"]["omniglot_5way"].update(val_every=TINY_TRAINING["steps"], val_shots=[1])  # once, at the end
    sets = episodes.run("omniglot", params, store, tmp_path / "episodes.h5")
    cfg = train_config(params, "omniglot_5way")
    rt = make_runtime("cpu", "fp32", True)
    pool = torch.from_numpy(load_split("omniglot", "train", store)).flatten(0, 1)
    val = torch.from_numpy(load_split("omniglot", "val", store))
    train.train(cfg, rt, pool, val, {1: sets[("val", 5, 1)]}, tmp_path / "m", tmp_path / "r", Run(None), progress=False)
    stage_weights = checkpoint.load(tmp_path / "m" / "best_1shot.pt")["model"]

    snaps = timecurve.train_with_snapshots(cfg, rt, pool, [0.0, 1e9])
    assert [(s["mark_minutes"], s["step"]) for s in snaps] == [(0.0, 1), (None, cfg.steps)]  # 1e9 s never reached
    for name, tensor in stage_weights.items():
        assert torch.equal(snaps[-1]["state"][name], tensor), name
    assert any(not torch.equal(snaps[0]["state"][k], t) for k, t in stage_weights.items())


def test_command_writes_a_record_and_a_figure(store, tmp_path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(tiny_params()))
    episodes.run("omniglot", tiny_params(), store, tmp_path / "episodes.h5")
    out = tmp_path / "curve"
    timecurve.main(
        ["--profile", "", "--params", str(params_path), "--store", str(store)]
        + ["--episodes", str(tmp_path / "episodes.h5"), "--minutes", "0", "--out", str(out)]
    )
    record = json.loads(out.with_suffix(".json").read_text())
    assert [p["step"] for p in record["points"]] == [1, TINY_TRAINING["steps"]]
    for point in record["points"]:
        for key in ("5way_1shot", "5way_5shot"):
            assert point[key]["episodes"] == 6 and 0 <= point[key]["accuracy"] <= 100
    assert record["train_config"]["lr_schedule"] == "cosine" and record["machine"]["device"] == "cpu"
    assert record["official_cpu"] == {"minutes": 18.0, "5way_1shot": 33.6}
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
