"""The parameter schemas: every problem at once, each naming the key, the value and what is
allowed; strict types; unknown and renamed keys refused."""

import copy

import pytest
import yaml
from conftest import REPO

from metagmvae.runtime.config import ConfigError, Fraction, PositiveInts, Section, SplitCounts, Way, parse
from metagmvae.schema.params import parse_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


class Example(Section):
    way: Way
    dropout: Fraction
    shots: PositiveInts
    counts: SplitCounts
    flag: bool


GOOD = {"way": 5, "dropout": 0.0, "shots": [1, 5], "counts": {"test": 20, "train": 64, "val": 16}, "flag": False}


def test_values_within_their_constraints_parse():
    cfg = parse(Example, GOOD, "x")
    assert (cfg.way, cfg.dropout, cfg.shots, cfg.flag) == (5, 0.0, [1, 5], False)
    assert cfg.counts.model_dump() == {"train": 64, "val": 16, "test": 20}  # any order in, split order out


def test_every_problem_is_reported_at_once_naming_key_value_and_constraint():
    bad = {"way": 1, "dropout": 1.0, "shots": [1, 0], "counts": {"train": 64, "val": 16}, "flag": 1, "wya": 5}
    with pytest.raises(ConfigError) as err:
        parse(Example, bad, "section.item")
    assert str(err.value).splitlines() == [
        "section.item.way = 1: must be >= 2",
        "section.item.dropout = 1.0: must be < 1",
        "section.item.shots.1 = 0: must be > 0",
        "section.item.counts.test: missing",
        "section.item.flag = 1: expected bool (true or false)",
        "section.item: unknown key(s) ['wya'] (did you mean 'way'?); "
        "allowed: ['counts', 'dropout', 'flag', 'shots', 'way']",
    ]


def test_types_are_strict_but_an_integer_is_a_float():
    with pytest.raises(ConfigError, match=r"^x.way = '5': expected int$"):
        parse(Example, GOOD | {"way": "5"}, "x")
    with pytest.raises(ConfigError, match=r"^x.way = True: expected int$"):
        parse(Example, GOOD | {"way": True}, "x")
    with pytest.raises(ConfigError, match=r"^x.way = 5.0: expected int$"):
        parse(Example, GOOD | {"way": 5.0}, "x")
    assert parse(Example, GOOD | {"dropout": 0}, "x").dropout == 0.0


def test_a_former_key_name_is_refused_with_its_new_name():
    params = copy.deepcopy(PARAMS)
    model = params["metatrain"]["omniglot_5way"]
    model["em_iters"] = model.pop("train_em_iters")
    with pytest.raises(ConfigError) as err:
        parse_section(params, "metatrain", "omniglot_5way")
    assert str(err.value) == "metatrain.omniglot_5way.em_iters: this key is now called 'train_em_iters'; rename it"
    model["train_em_iters"] = 10  # the old name beside the new one is refused too
    with pytest.raises(
        ConfigError, match=r"^metatrain.omniglot_5way.em_iters: this key is now called 'train_em_iters'"
    ):
        parse_section(params, "metatrain", "omniglot_5way")
    test = params["evaluate"]["omniglot"]
    test["samples"], test["em_iters"] = test.pop("test_samples"), test.pop("test_em_iters")
    with pytest.raises(ConfigError) as err:
        parse_section(params, "evaluate", "omniglot")
    assert sorted(str(err.value).splitlines()) == [
        "evaluate.omniglot.em_iters: this key is now called 'test_em_iters'; rename it",
        "evaluate.omniglot.samples: this key is now called 'test_samples'; rename it",
    ]
