"""Parameter profiles: the paper overrides apply cleanly and become `dvc exp run` arguments."""

import pytest
import yaml
from conftest import REPO

from metagmvae.cli.profile import load_profile, merge, set_param_args
from metagmvae.runtime.config import ConfigError
from metagmvae.schema.params import parse_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_paper_profile_gives_the_official_settings():
    paper = merge(PARAMS, load_profile("paper"))
    for name, points in (("omniglot_5way", 200), ("omniglot_20way", 300)):
        cfg = parse_section(paper, "metatrain", name)  # validates the merged section
        assert (cfg.batch, cfg.points, cfg.samples, cfg.steps, cfg.lr) == (4, points, 32, 60000, 1e-3)
        assert cfg.train_em_iters == 10 and cfg.weight_decay == 1e-6 and cfg.precision == "fp32"
        assert cfg.samples_decoder == cfg.samples  # the official estimator
    assert paper["episodes"]["omniglot"]["val"] == {**PARAMS["episodes"]["omniglot"]["val"], "episodes": 1000}
    assert PARAMS["metatrain"]["omniglot_5way"]["batch"] == 1  # the base is not modified


def test_paper_profile_states_its_precision_in_every_section():
    """fp32 everywhere, never `auto` (which picks bf16 on hardware with native bf16)."""
    paper = merge(PARAMS, load_profile("paper"))
    stated = {
        f"{stage}.{name}": section["precision"]
        for stage, sections in paper.items()
        for name, section in sections.items()
        if isinstance(section, dict) and "precision" in section
    }
    assert len(stated) >= 10 and set(stated.values()) == {"fp32"}, stated


def test_paper_profile_gives_the_official_mini_imagenet_settings():
    paper = merge(PARAMS, load_profile("paper"))
    cfg = parse_section(paper, "metatrain", "mini_imagenet_5way")
    assert (cfg.batch, cfg.points, cfg.samples, cfg.steps, cfg.lr, cfg.weight_decay) == (16, 5, 256, 15000, 1e-4, 5e-2)
    assert cfg.model.latent == 32 and cfg.model.hidden == 512 and cfg.val_shots == [1]
    simclr = parse_section(paper, "pretrain", "mini_imagenet")
    assert (simclr.train_per_class, simclr.epochs, simclr.batch, simclr.lr, simclr.temperature) == (
        600,
        400,
        512,
        1e-3,
        0.5,
    )
    assert paper["extract"]["mini_imagenet"]["per_class"] == {"train": 600, "val": 600, "test": 600}
    assert paper["evaluate"]["mini_imagenet"]["models"] == {"mini_imagenet_5way": [1, 5, 20, 50]}


def test_set_param_arguments_round_trip():
    args = set_param_args(PARAMS, {"metatrain": {"omniglot_5way": {"lr": 0.002, "precision": "fp32"}}})
    assert args == [
        "--set-param=metatrain.omniglot_5way.lr=0.002",
        '--set-param=metatrain.omniglot_5way.precision="fp32"',
    ]


def test_unknown_override_key_is_refused():
    with pytest.raises(ConfigError, match="profile overrides unknown key 'metatrain.omniglot_5way.learning_rate'"):
        merge(PARAMS, {"metatrain": {"omniglot_5way": {"learning_rate": 1}}})
    with pytest.raises(ConfigError, match="unknown profile 'fast'; known profiles: cpu, paper, quick"):
        load_profile("fast")
