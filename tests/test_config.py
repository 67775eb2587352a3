"""The shared value checks of parameter sections: each names what is allowed."""

from metagmvae.config import at_least, counts_per_split, fraction


def test_at_least():
    assert at_least(2)(2) is None and at_least(2)(7) is None
    assert at_least(2)(1) == "must be >= 2"


def test_fraction_includes_zero_and_excludes_one():
    assert fraction(0.0) is None and fraction(0.9) is None
    assert fraction(1.0) == fraction(-0.1) == "must be in [0, 1)"


def test_counts_per_split_wants_every_split_once_with_a_positive_int():
    check = counts_per_split(("train", "val", "test"), "class counts")
    assert check({"test": 20, "train": 64, "val": 16}) is None  # any order
    problem = "must map train, val and test to class counts > 0"
    for bad in ({"train": 64, "val": 16}, {"train": 64, "val": 16, "test": 0}, {"train": 64, "val": 16, "test": 2.5}):
        assert check(bad) == problem, bad
    assert check({"train": 64, "val": 16, "test": 20, "extra": 1}) == problem


def test_a_former_key_name_is_refused_with_its_new_name():
    import pytest
    import yaml
    from conftest import REPO

    from metagmvae.config import ConfigError
    from metagmvae.pipeline.evaluate import eval_config
    from metagmvae.pipeline.metatrain import train_config

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    model = params["metatrain"]["omniglot_5way"]
    model["em_iters"] = model.pop("train_em_iters")
    renamed = r"^metatrain.omniglot_5way.em_iters: this key is now called 'train_em_iters'; rename it$"
    with pytest.raises(ConfigError, match=renamed):
        train_config(params, "omniglot_5way")
    model["train_em_iters"] = 10  # the old name beside the new one is refused too
    with pytest.raises(ConfigError, match=renamed):
        train_config(params, "omniglot_5way")
    test = params["evaluate"]["omniglot"]
    test["samples"], test["em_iters"] = test.pop("test_samples"), test.pop("test_em_iters")
    with pytest.raises(ConfigError, match=r"^evaluate.omniglot.samples: this key is now called 'test_samples'"):
        eval_config(params, "omniglot")
    test["test_samples"] = test.pop("samples")
    with pytest.raises(ConfigError, match=r"^evaluate.omniglot.em_iters: this key is now called 'test_em_iters'"):
        eval_config(params, "omniglot")
