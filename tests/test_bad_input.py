"""Bad input and impossible parameters: a clear error naming the problem, and no output."""

import copy

import pytest
import yaml
from conftest import REPO, TINY_CHARACTERS

from metagmvae.config import ConfigError
from metagmvae.data.hdf5 import StoreError
from metagmvae.pipeline import augment, episodes, evaluate, metatrain

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def episode_params(**test):
    params = copy.deepcopy(PARAMS)
    params["episodes"]["omniglot"]["val"] = {"episodes": 2, "ways": [5], "shots": [1]}
    params["episodes"]["omniglot"]["test"] = {"episodes": 2, "ways": [5], "shots": [1], **test}
    return params


@pytest.mark.parametrize(
    "test,match",
    [
        (
            {"shots": [6]},
            r"episodes.omniglot.test \(5-way 6-shot\): shot \+ query = 6 \+ 15 = 21 is larger than "
            r"the 20 instances per class",
        ),
        ({"ways": [17]}, r"episodes.omniglot.test \(17-way 1-shot\): way=17 is larger than the 16 classes"),
        ({"ways": [0]}, r"episodes.omniglot.test.ways = \[0\]: must be a non-empty list of integers > 0"),
        ({"episodes": -3}, r"episodes.omniglot.test.episodes = -3: must be > 0"),
        ({"shot": [1]}, r"episodes.omniglot.test: unknown key\(s\) \['shot'\]"),
    ],
)
def test_impossible_episode_params(store, tmp_path, test, match):
    out = tmp_path / "episodes.h5"
    with pytest.raises((ValueError, ConfigError), match=match):
        episodes.run("omniglot", episode_params(**test), store, out)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left behind


def test_split_that_does_not_match_the_archives(tiny_sources, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in TINY_CHARACTERS:
        (raw / name).write_bytes((tiny_sources / name).read_bytes())
    params = copy.deepcopy(PARAMS)  # 1200 / 100 / 323 against 20 characters
    with pytest.raises(ValueError, match="split sizes .* sum to 1623, but the archives hold 20 characters"):
        augment.run(params, raw, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'raw'}: no .zip archives"):
        augment.run(copy.deepcopy(PARAMS), tmp_path / "raw", tmp_path)
    with pytest.raises(StoreError, match="missing.h5: file not found"):
        episodes.run("omniglot", episode_params(), tmp_path / "missing.h5", tmp_path / "e.h5")


def test_truncated_store_is_named(store, tmp_path):
    bad = tmp_path / "omniglot.h5"
    bad.write_bytes(store.read_bytes()[:5000])
    with pytest.raises(StoreError, match="omniglot.h5: not a readable HDF5 file"):
        episodes.run("omniglot", episode_params(), bad, tmp_path / "e.h5")
    assert not (tmp_path / "e.h5").exists()


def run_metatrain(params, store, folder):
    metatrain.run(
        "omniglot_5way",
        params,
        store,
        folder / "episodes.h5",
        folder / "model",
        folder / "plots",
        folder / "curves",
        folder / "metrics.json",
        folder / "resume",
    )


@pytest.mark.parametrize(
    "change,match",
    [
        ({"lr": -1.0}, r"metatrain.omniglot_5way.lr = -1.0: must be > 0"),
        ({"batch": 0}, r"metatrain.omniglot_5way.batch = 0: must be > 0"),
        ({"steps": "many"}, r"metatrain.omniglot_5way.steps = 'many': expected int"),
        ({"device": "tpu"}, r"metatrain.omniglot_5way.device = 'tpu': must be one of \['auto', 'cpu', 'cuda'\]"),
        (
            {"dataset": "cifar"},
            r"metatrain.omniglot_5way.dataset = 'cifar': must be one of \['omniglot', 'mini_imagenet'\]",
        ),
        ({"learning_rate": 1.0}, r"metatrain.omniglot_5way: unknown key\(s\) \['learning_rate'\]"),
        (
            {"model": {"kind": "pixels", "latent": 64, "hidden": 64, "heads": 3, "blocks": 2}},
            r"set-encoder width 256 is not divisible by heads = 3",
        ),
        ({"way": 30, "points": 5, "samples": 4}, r"way = 30 components need at least as many points"),
    ],
)
def test_bad_metatrain_params(store, tmp_path, change, match):
    params = copy.deepcopy(PARAMS)
    params["metatrain"]["omniglot_5way"].update(change)
    with pytest.raises(ConfigError, match=match):
        run_metatrain(params, store, tmp_path)
    assert not (tmp_path / "model").exists() and not (tmp_path / "plots").exists()


def test_cuda_requested_without_a_gpu(store, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params = copy.deepcopy(PARAMS)
    params["metatrain"]["omniglot_5way"]["device"] = "cuda"
    with pytest.raises(ConfigError, match="device = 'cuda': no CUDA GPU is available"):
        run_metatrain(params, store, tmp_path)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"models": {"omniglot_5way": [0]}}, r"evaluate.omniglot.models.omniglot_5way = \[0\]: must be a non-empty"),
        (
            {"baselines": ["knn"]},
            r"evaluate.omniglot.baselines = \['knn'\]: must be drawn from \['logistic_regression', 'pixel_1nn'\]",
        ),
        ({"samples": 0}, r"evaluate.omniglot.samples = 0: must be > 0"),
    ],
)
def test_bad_evaluate_params(store, tmp_path, change, match):
    params = copy.deepcopy(PARAMS)
    params["evaluate"]["omniglot"].update(change)
    with pytest.raises(ConfigError, match=match):
        evaluate.run("omniglot", params, store, tmp_path / "e.h5", tmp_path, tmp_path / "m.json", tmp_path / "p")
    assert sorted(tmp_path.iterdir()) == []
