"""Bad input and impossible parameters: a clear error naming the problem, and no output."""

import copy
import subprocess

import pytest
import yaml
from conftest import REPO, TINY_CHARACTERS, TINY_SPLIT

from metagmvae.cli.profile import load_profile, merge
from metagmvae.data.hdf5 import StoreError
from metagmvae.pipeline import augment, episodes, metatrain
from metagmvae.runtime.config import ConfigError
from metagmvae.schema.params import parse_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def episode_params(**test):
    params = copy.deepcopy(PARAMS)
    params["episodes"]["omniglot"]["val"] = {"episodes": 2, "ways": [5], "shots": [1]}
    params["episodes"]["omniglot"]["test"] = {"episodes": 2, "ways": [5], "shots": [1], **test}
    return params


EPISODES = parse_section(episode_params(), "episodes", "omniglot")
AUGMENT = parse_section(PARAMS, "augment", "omniglot")


@pytest.mark.parametrize(
    "test,match",
    [
        (
            {"shots": [6]},
            r"episodes.omniglot.test \(5-way 6-shot\): shot \+ query = 6 \+ 15 = 21 is larger than "
            r"the 20 instances per class",
        ),
        ({"ways": [17]}, r"episodes.omniglot.test \(17-way 1-shot\): way=17 is larger than the 16 classes"),
        ({"ways": [0]}, r"episodes.omniglot.test.ways.0 = 0: must be > 0"),
        ({"shots": []}, r"episodes.omniglot.test.shots = \[\]: must have at least 1 item"),
        ({"episodes": -3}, r"episodes.omniglot.test.episodes = -3: must be > 0"),
        ({"shot": [1]}, r"episodes.omniglot.test: unknown key\(s\) \['shot'\]"),
    ],
)
def test_impossible_episode_params(store, tmp_path, test, match):
    out = tmp_path / "episodes.h5"
    with pytest.raises((ValueError, ConfigError), match=match):
        episodes.run("omniglot", parse_section(episode_params(**test), "episodes", "omniglot"), store, out)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left behind


def test_split_that_does_not_match_the_archives(tiny_sources, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in TINY_CHARACTERS:
        (raw / name).write_bytes((tiny_sources / name).read_bytes())
    params = copy.deepcopy(PARAMS)  # 1200 / 100 / 323 against 20 characters
    with pytest.raises(ValueError, match="split sizes .* sum to 1623, but the archives hold 20 characters"):
        augment.run(parse_section(params, "augment", "omniglot"), raw, tmp_path / "o.h5", tmp_path / "split.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'raw'}: no .zip archives"):
        augment.run(AUGMENT, tmp_path / "raw", tmp_path / "o.h5", tmp_path / "s.json")
    with pytest.raises(StoreError, match="missing.h5: file not found"):
        episodes.run("omniglot", EPISODES, tmp_path / "missing.h5", tmp_path / "e.h5")


def test_truncated_store_is_named(store, tmp_path):
    bad = tmp_path / "omniglot.h5"
    bad.write_bytes(store.read_bytes()[:5000])
    with pytest.raises(StoreError, match="omniglot.h5: not a readable HDF5 file"):
        episodes.run("omniglot", EPISODES, bad, tmp_path / "e.h5")
    assert not (tmp_path / "e.h5").exists()


def run_metatrain(params, store, folder):
    out = metatrain.Outputs(folder / "model", folder / "plots", folder / "t.csv", folder / "v.csv", folder / "m.json")
    cfg = parse_section(params, "metatrain", "omniglot_5way")
    metatrain.run("omniglot_5way", cfg, store, folder / "episodes.h5", out, folder / "resume")


@pytest.mark.parametrize(
    "change,match",
    [
        ({"lr": -1.0}, r"metatrain.omniglot_5way.lr = -1.0: must be > 0"),
        ({"batch": 0}, r"metatrain.omniglot_5way.batch = 0: must be > 0"),
        ({"steps": "many"}, r"metatrain.omniglot_5way.steps = 'many': expected int"),
        ({"fix_pi": 1}, r"metatrain.omniglot_5way.fix_pi = 1: expected bool"),
        ({"batch": 2.0}, r"metatrain.omniglot_5way.batch = 2.0: expected int"),
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
    with pytest.raises(ConfigError, match="metatrain.omniglot_5way.device = 'cuda': no CUDA GPU is available"):
        run_metatrain(params, store, tmp_path)
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change,match",
    [
        ({"models": {"omniglot_5way": [0]}}, r"evaluate.omniglot.models.omniglot_5way.0 = 0: must be > 0"),
        ({"models": {}}, r"evaluate.omniglot.models = \{\}: must have at least 1 item"),
        (
            {"baselines": ["knn"]},
            r"evaluate.omniglot.baselines.0 = 'knn': must be one of \['pixel_1nn', 'logistic_regression'\]",
        ),
        ({"test_samples": 0}, r"evaluate.omniglot.test_samples = 0: must be > 0"),
    ],
)
def test_bad_evaluate_params(change, match):
    params = copy.deepcopy(PARAMS)
    params["evaluate"]["omniglot"].update(change)
    with pytest.raises(ConfigError, match=match):
        parse_section(params, "evaluate", "omniglot")


def test_whole_file_validation_reports_every_problem_with_key_and_value(tmp_path, capsys):
    from metagmvae.cli import validate

    params = copy.deepcopy(PARAMS)
    params["evaluat"] = {}  # a typo of a section
    params["download"]["cifar"] = {}  # an unknown dataset
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert validate.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown top-level section(s) ['evaluat']" in err and "download: unknown dataset(s) ['cifar']" in err

    params = copy.deepcopy(PARAMS)
    params["metatrain"]["omniglot_5way"]["points"] = 0
    params["pretrain"]["mini_imagenet"]["epochs"] = -2
    params["episodes"]["omniglot"]["test"]["shots"] = [1, 5, 6]  # 6 + 15 queries > 20 drawers
    params["evaluate"]["mini_imagenet"]["models"]["mini_imagenet_10way"] = [1]
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    assert validate.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err
    assert "pretrain.mini_imagenet.epochs = -2: must be > 0" in err
    assert "metatrain.omniglot_5way.points = 0: must be > 0" in err
    assert (
        "episodes.omniglot.test (5-way 6-shot): shot + query = 6 + 15 = 21 is larger than the 20 instances per class"
        in err
    )
    assert "evaluate.mini_imagenet.models.mini_imagenet_10way: no such model in metatrain" in err

    path.write_text((REPO / "params.yaml").read_text())
    assert validate.main([str(path)]) == 0
    for profile in sorted((REPO / "profiles").glob("*.yaml")):  # every shipped profile is valid
        path.write_text(yaml.safe_dump(merge(PARAMS, load_profile(profile.stem)), sort_keys=False))
        assert validate.main([str(path)]) == 0, profile.name


def test_a_stage_refuses_a_bad_later_section_before_any_work(store, tmp_path):
    """The first stage to run checks the whole file: a typo meant for `evaluate` stops
    `metatrain` before it trains, and it writes nothing."""
    from stage_runs import make_project, start_stage

    params = copy.deepcopy(PARAMS)
    params["augment"]["omniglot"]["split"] = TINY_SPLIT
    params["evaluate"]["omniglot"]["test_sample"] = 32  # typo of `test_samples`
    project = make_project(tmp_path / "p", params, {"data/omniglot/omniglot.h5": store})
    proc = start_stage(project, "metatrain@omniglot_5way")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "evaluate.omniglot: unknown key(s) ['test_sample'] (did you mean 'test_samples'?)" in out
    assert sorted(p.name for p in project.iterdir()) == ["data", "params.yaml"]  # no models, .resume, metrics


def test_missing_source_is_named_and_nothing_is_written(tmp_path):
    from metagmvae.data.sources import SourceError
    from metagmvae.pipeline import download

    params = copy.deepcopy(PARAMS)
    params["download"]["mini_imagenet"]["sources"] = [str(tmp_path / "nowhere")]
    with pytest.raises(SourceError, match=rf"{tmp_path / 'nowhere'}: .*source folder not found"):
        download.run(parse_section(params, "download", "mini_imagenet"), tmp_path / "raw", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"params.yaml: missing section 'download.cifar'"):
        parse_section(params, "download", "cifar")


def test_the_download_stage_names_a_modified_archive_in_one_message_without_a_traceback(tiny_sources, tmp_path):

    from conftest import TINY_CHARACTERS, tiny_members, write_zip
    from stage_runs import make_project, stage_command, stage_env

    from metagmvae.data import omniglot

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    members = tiny_members("images_background.zip", 12)
    members[5] = (members[5][0], members[5][1][:-12] + bytes(12))  # same size, different bytes
    write_zip(mirror / "images_background.zip", members)
    (mirror / "images_evaluation.zip").write_bytes((tiny_sources / "images_evaluation.zip").read_bytes())
    params = copy.deepcopy(PARAMS)
    params["download"]["omniglot"]["sources"] = [str(mirror)]
    params["download"]["omniglot"]["archives"] = {
        name: {"characters": chars, "content_sha256": omniglot.verify_archive(tiny_sources / name).content_sha256}
        for name, chars in TINY_CHARACTERS.items()
    }
    project = make_project(tmp_path / "p", params, {})
    proc = subprocess.run(
        stage_command(project, "download@omniglot"), cwd=project, env=stage_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("download.py: error: images_background.zip: no source gave a valid copy:\n")
    assert f"  {mirror}/images_background.zip: content digest " in proc.stderr  # the source file, named once
    assert ".tmp" not in proc.stderr and sorted(p.name for p in project.iterdir()) == ["params.yaml"]


def test_a_stage_run_out_of_order_names_the_missing_input_in_one_line(tmp_path):
    """`evaluate@omniglot` before anything was built: one line naming the store, exit status 2."""
    from stage_runs import make_project, stage_command, stage_env

    project = make_project(tmp_path / "p", yaml.safe_load((REPO / "params.yaml").read_text()), {})
    proc = subprocess.run(
        stage_command(project, "evaluate@omniglot"), cwd=project, env=stage_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "not found" in proc.stderr, proc.stderr
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml"]  # nothing written
