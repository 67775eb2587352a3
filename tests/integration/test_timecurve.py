"""Accuracy against wall time: snapshots of the same run the metatrain stage makes, a JSON record
and a figure."""

import copy
import json

import pytest
import torch
import yaml
from conftest import REPO, TINY_TRAINING

from benchmarks import timecurve
from metagmvae.analysis.paper import PAPER_RESULTS
from metagmvae.cli.profile import apply_sets
from metagmvae.data.stores import load_split
from metagmvae.methods import meta_gmvae as train
from metagmvae.pipeline import episodes
from metagmvae.runtime import checkpoint
from metagmvae.runtime.config import ConfigError
from metagmvae.runtime.device import make_runtime
from metagmvae.runtime.tracking import Run
from metagmvae.schema.params import parse_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def tiny_params(cosine: bool = True) -> dict:
    params = copy.deepcopy(PARAMS)
    params["episodes"]["omniglot"]["val"] = {"episodes": 4, "ways": [5], "shots": [1]}
    params["episodes"]["omniglot"]["test"] = {"episodes": 6, "ways": [5], "shots": [1, 5]}
    params["metatrain"]["omniglot_5way"].update(
        TINY_TRAINING, val_shots=[1], lr_schedule="cosine" if cosine else "constant"
    )
    params["evaluate"]["omniglot"].update(test_samples=2, episodes_per_call=3, precision="fp32")
    return params


def test_final_snapshot_is_the_metatrain_stage_model(store, tmp_path):
    """Same seeds, schedule and steps: the curve measures the model the pipeline trains."""
    params = tiny_params()
    params["metatrain"]["omniglot_5way"].update(val_every=TINY_TRAINING["steps"])  # once, at the end
    sets = episodes.run("omniglot", parse_section(params, "episodes", "omniglot"), store, tmp_path / "episodes.h5")
    cfg = parse_section(params, "metatrain", "omniglot_5way")
    rt = make_runtime("cpu", "fp32", True, convolutional=True)
    pool = torch.from_numpy(load_split("omniglot", "train", store)).flatten(0, 1)
    val = torch.from_numpy(load_split("omniglot", "val", store))
    train.train(cfg, rt, pool, val, {1: sets[("val", 5, 1)]}, tmp_path / "m", tmp_path / "r", Run(None), progress=False)
    stage_weights = checkpoint.load(tmp_path / "m" / "best_1shot.pt")["model"]

    snaps, median_step = timecurve.train_with_snapshots(cfg, rt, pool, [0.0, 1e9])
    assert 0 < median_step < 10
    assert [(s["mark_minutes"], s["step"]) for s in snaps] == [(0.0, 1), (None, cfg.steps)]  # 1e9 s never reached
    for name, tensor in stage_weights.items():
        assert torch.equal(snaps[-1]["state"][name], tensor), name
    assert any(not torch.equal(snaps[0]["state"][k], t) for k, t in stage_weights.items())


def test_command_writes_a_record_and_a_figure(store, tmp_path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(tiny_params()))
    episodes.run("omniglot", parse_section(tiny_params(), "episodes", "omniglot"), store, tmp_path / "episodes.h5")
    out = tmp_path / "curve"
    timecurve.main(
        ["--profile", "", "--params", str(params_path), "--store", str(store)]
        + ["--episodes", str(tmp_path / "episodes.h5"), "--minutes", "0", "--out", str(out)]
        + ["--set", "metatrain.omniglot_5way.samples_decoder=1", "--set", "metatrain.omniglot_5way.lr=0.002"]
    )
    record = json.loads(out.with_suffix(".json").read_text())
    assert [p["step"] for p in record["points"]] == [1, TINY_TRAINING["steps"]]
    for point in record["points"]:
        assert set(point["val"]) == {"5way_1shot"} and point["val"]["5way_1shot"]["episodes"] == 4
        for key in ("5way_1shot", "5way_5shot"):
            assert point["test"][key]["episodes"] == 6 and 0 <= point["test"][key]["accuracy"] <= 100
    kept = record["best_on_validation"]["5way_1shot"]
    best_val = max(p["val"]["5way_1shot"]["accuracy"] for p in record["points"])
    assert kept["val"]["accuracy"] == best_val
    assert kept["test"] == next(p["test"] for p in record["points"] if p["step"] == kept["step"])
    cfg = record["train_config"]
    assert (cfg["lr_schedule"], cfg["samples_decoder"], cfg["lr"]) == ("cosine", 1, 0.002)
    assert record["machine"]["device"] == "cpu" and record["store"]["resize_filter"] == "lanczos"
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_kept_snapshot_is_the_earliest_best_on_validation_not_the_last():
    def point(step, val):
        return {"step": step, "minutes": step / 100, "val": {"5way_1shot": {"accuracy": val}}, "test": {"t": step}}

    points = [point(500, 70.0), point(1000, 78.0), point(1500, 78.0), point(2000, 66.0)]
    kept = timecurve.best_on_validation(points)["5way_1shot"]
    assert (kept["step"], kept["test"]) == (1000, {"t": 1000})


def test_an_override_of_a_key_that_does_not_exist_is_refused():
    with pytest.raises(ConfigError, match="unknown key 'metatrain.omniglot_5way.sampels'"):
        apply_sets(PARAMS, ["metatrain.omniglot_5way.sampels=1"])


def test_official_figures_come_from_one_file_with_their_source():
    """The chart's official curves are read from benchmarks/references.json, each with where and
    on what it was measured, and the paper's values from metagmvae.analysis.paper: no test or module retypes
    them."""
    refs = timecurve.references("omniglot")
    assert refs["paper"] == {key: acc for key, (acc, _) in PAPER_RESULTS["omniglot"].items()}
    official = {name: ref for name, ref in refs.items() if name != "paper"}
    assert official, "benchmarks/references.json holds the official measurements"
    for ref in official.values():
        assert "github.com/db-Lee/Meta-GMVAE @ 7962392" in ref["source"] and ref["machine"]  # code, commit, machine
        for curve in ref["curves"]:
            assert curve["label"] and curve["points"]
            for point in curve["points"]:
                assert point["seconds"] > 0 and point["steps"] > 0 and 0 < point["5way_1shot"] < 100
