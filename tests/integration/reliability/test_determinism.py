"""Item 5: the same seed and the same inputs on CPU give byte-identical HDF5 files, model
folders and metrics files, stage after stage and process after process (so DVC's hashes stay
valid)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from conftest import REPO, TINY_CHARACTERS
from stage_runs import stage_env, tree_bytes

from metagmvae.data.stores import load_split
from metagmvae.methods.meta_gmvae import train
from metagmvae.pipeline import augment, episodes, evaluate, extract
from metagmvae.runtime.tracking import Run
from metagmvae.schema.params import parse_section


def omniglot_chain(params: dict, tiny_sources, out) -> None:
    """augment -> episodes -> metatrain (one model) -> evaluate, into ``out``."""
    raw = out / "raw"
    raw.mkdir(parents=True)
    for name in TINY_CHARACTERS:
        (raw / name).write_bytes((tiny_sources / name).read_bytes())
    store = out / "omniglot.h5"
    augment.run(parse_section(params, "augment", "omniglot"), raw, store, out / "split.json")
    sets = episodes.run("omniglot", parse_section(params, "episodes", "omniglot"), store, out / "episodes.h5")
    cfg = parse_section(params, "metatrain", "omniglot_5way")
    rt = cfg.runtime(convolutional=True)
    pool = torch.from_numpy(load_split("omniglot", "train", store)).flatten(0, 1)
    val = torch.from_numpy(load_split("omniglot", "val", store))
    val_eps = {shot: sets[("val", 5, shot)] for shot in cfg.val_shots}
    models = out / "models"
    train(cfg, rt, pool, val, val_eps, models / "omniglot_5way", out / "resume", Run(None), progress=False)
    plots = out / "plots"
    outputs = evaluate.Outputs(out / "metrics.json", plots / "a.png", plots / "e.png", plots / "accuracy_by_shot.csv")
    evaluate.run("omniglot", parse_section(params, "evaluate", "omniglot"), store, out / "episodes.h5", models, outputs)


def chain_in_a_new_process(params: dict, tiny_sources, out) -> None:
    """:func:`omniglot_chain` in a fresh interpreter with another hash seed (string hashing, set
    and dict-of-set orders all change) and this process's number of threads."""
    params_file = out.with_suffix(".yaml")
    params_file.write_text(yaml.safe_dump(params))
    code = (
        "import sys, yaml; from pathlib import Path; from test_determinism import omniglot_chain; "
        "omniglot_chain(yaml.safe_load(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), Path(sys.argv[3]))"
    )
    env = stage_env(PYTHONHASHSEED="12345", OMP_NUM_THREADS=str(torch.get_num_threads()))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), str(Path(__file__).parent)])
    args = [sys.executable, "-c", code, str(params_file), str(tiny_sources), str(out)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_omniglot_chain_twice_gives_identical_bytes(pipeline_params, tiny_sources, tmp_path):
    """Once in this process, once in a new one: the outputs depend on the seeds and the inputs
    only, not on the process (its hash seed, what ran before in it)."""
    params = copy.deepcopy(pipeline_params)
    params["metatrain"]["omniglot_5way"]["precision"] = "bf16"  # the fast path is deterministic too
    params["evaluate"]["omniglot"].update(models={"omniglot_5way": [1, 5]}, cross_way={"omniglot_5way": [10]})
    omniglot_chain(params, tiny_sources, tmp_path / "a")
    chain_in_a_new_process(params, tiny_sources, tmp_path / "b")
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    compared = [
        "omniglot.h5",
        "split.json",
        "episodes.h5",
        "models/omniglot_5way/best_1shot.pt",
        "models/omniglot_5way/best_5shot.pt",
        "models/omniglot_5way/history.json",
        "models/omniglot_5way/summary.json",
        "metrics.json",
        "episodes/metrics.json",  # every episode's result, cross-way included
        "plots/accuracy_by_shot.csv",
    ]
    for name in compared:
        assert a[name] == b[name], f"{name} differs between two identical runs"
    assert a["omniglot.h5"][:8] == b"\x89HDF\r\n\x1a\n"


def test_feature_store_twice_gives_identical_bytes(mini_store, pipeline_params, tmp_path):
    images, encoder = mini_store / "raw" / "images.h5", mini_store / "simclr" / "simclr.pt"
    for name in ("a.h5", "b.h5"):
        cfg = parse_section(pipeline_params, "extract", "mini_imagenet")
        extract.run("mini_imagenet", cfg, images, encoder, tmp_path / name, tmp_path / f"{name}.json")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    assert (tmp_path / "a.h5").read_bytes() == (mini_store / "mini_imagenet.h5").read_bytes()
