"""Cross-way evaluation on the tiny Omniglot data: a model trained with K = 5 components tested on
20-way episodes and one trained with K = 20 on 5-way episodes, on the same fixed episodes as the
model trained at that way, through the real `metatrain` and `evaluate` stages."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from conftest import REPO, TINY_CHARACTERS, TINY_TRAINING

from metagmvae.evaluation.episode_results import parse, results_path
from metagmvae.pipeline import augment, episodes, evaluate, metatrain
from metagmvae.runtime.config import ConfigError
from metagmvae.schema.params import params_problems, parse_section

CROSS_SPLIT = {"train": 8, "val": 6, "test": 6}  # 24 test classes: enough for 20-way episodes


def cross_way_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"]["omniglot"]["split"] = CROSS_SPLIT
    params["episodes"]["omniglot"].update(
        val={"episodes": 4, "ways": [5, 20], "shots": [1]}, test={"episodes": 6, "ways": [5, 20], "shots": [1]}
    )
    for name, way in (("omniglot_5way", 5), ("omniglot_20way", 20)):
        params["metatrain"][name].update(TINY_TRAINING, way=way, val_shots=[1])
    params["evaluate"]["omniglot"].update(
        models={"omniglot_5way": [1], "omniglot_20way": [1]},
        cross_way={"omniglot_5way": [20], "omniglot_20way": [5]},
        test_samples=2,
        episodes_per_call=3,
        precision="fp32",
    )
    return params


@pytest.fixture(scope="module")
def evaluated(tiny_sources, tmp_path_factory):
    """Both models trained and evaluated, own way and cross-way: ``(params, folder, metrics)``."""
    out = tmp_path_factory.mktemp("cross_way")
    params = cross_way_params()
    raw = out / "raw"
    raw.mkdir()
    for name in TINY_CHARACTERS:
        (raw / name).write_bytes((tiny_sources / name).read_bytes())
    store, episodes_path = out / "omniglot.h5", out / "episodes.h5"
    augment.run(parse_section(params, "augment", "omniglot"), raw, store, out / "split.json")
    episodes.run("omniglot", parse_section(params, "episodes", "omniglot"), store, episodes_path)
    for name in ("omniglot_5way", "omniglot_20way"):
        trained = metatrain.Outputs(
            out / "models" / name,
            out / "plots" / name,
            out / "plots" / "curves" / f"{name}-train.csv",
            out / "plots" / "curves" / f"{name}-val.csv",
            out / "train" / f"{name}.json",
        )
        cfg = parse_section(params, "metatrain", name)
        metatrain.run(name, cfg, store, episodes_path, trained, out / "resume")
    plots = out / "plots"
    scored = evaluate.Outputs(
        out / "m.json", plots / "accuracy.png", plots / "embedding.png", plots / "accuracy_by_shot.csv"
    )
    metrics = evaluate.run(
        "omniglot", parse_section(params, "evaluate", "omniglot"), store, episodes_path, out / "models", scored
    )
    return params, out, metrics


def test_each_model_predicts_the_other_way_on_the_same_episodes(evaluated):
    params, out, metrics = evaluated
    assert sorted(metrics) == ["meta_gmvae", "meta_gmvae_trained_20way", "meta_gmvae_trained_5way", "pixel_1nn"]
    assert sorted(metrics["meta_gmvae_trained_5way"]) == ["20way_1shot"]  # K = 5 model on 20-way episodes
    assert sorted(metrics["meta_gmvae_trained_20way"]) == ["5way_1shot"]  # K = 20 model on 5-way episodes
    for method, key in (("meta_gmvae_trained_5way", "20way_1shot"), ("meta_gmvae_trained_20way", "5way_1shot")):
        res = metrics[method][key]
        assert res["episodes"] == 6 and 0 <= res["accuracy"] <= 100
    assert json.loads((out / "m.json").read_text()) == metrics
    table = parse(results_path(out / "m.json").read_text(), "m")
    for way, cross in ((20, "meta_gmvae_trained_5way"), (5, "meta_gmvae_trained_20way")):
        own, other = table[("omniglot", "meta_gmvae", f"{way}way_1shot")], table[("omniglot", cross, f"{way}way_1shot")]
        assert own.episodes_sha256 == other.episodes_sha256  # scored on the same fixed episodes
        assert 100 * other.accuracies.mean() == pytest.approx(metrics[cross][f"{way}way_1shot"]["accuracy"], abs=0.006)
        entry = json.loads(results_path(out / "m.json").read_text())["results"][cross][f"{way}way_1shot"]
        assert entry["queries"] == 15 * way and len(entry["correct"]) == 6
        assert all(isinstance(c, int) and 0 <= c <= 15 * way for c in entry["correct"])
    # the accuracy chart and its plot data stay per-own-way
    header = (out / "plots" / "accuracy_by_shot.csv").read_text().splitlines()[0]
    assert "trained" not in header


def test_cross_way_settings_are_checked(evaluated):
    params = copy.deepcopy(evaluated[0])
    params["evaluate"]["omniglot"]["cross_way"] = {"omniglot_5way": [5, 10]}
    found = params_problems(params)
    assert "evaluate.omniglot.cross_way.omniglot_5way = [5, 10]: 5 is the model's own way" in " ".join(found)
    assert any("testing at ['10-way 1-shot'] needs those settings in episodes.omniglot.test" in p for p in found)
    params["evaluate"]["omniglot"]["cross_way"] = {"omniglot_1way": [5]}
    with pytest.raises(ConfigError, match=r"^evaluate\.omniglot: cross_way\.omniglot_1way: not one of models"):
        parse_section(params, "evaluate", "omniglot")
    params["evaluate"]["omniglot"]["cross_way"] = {"omniglot_5way": [20]}
    params["metatrain"]["omniglot_20way"]["way"] = 5  # two models trained at 5-way
    params["evaluate"]["omniglot"]["cross_way"]["omniglot_20way"] = [20]
    assert any("share one name (meta_gmvae_trained_5way)" in p for p in params_problems(params))
