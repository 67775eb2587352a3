"""The SimCLR budget command: snapshots at training minutes (and the untrained encoder), each
scored by LR(SimCLR) on the fixed test episodes, in one JSON record."""

from __future__ import annotations

import json
import shutil

import yaml
from conftest import REPO, tiny_mini_params

from benchmarks import simclr_budget
from metagmvae.pipeline import episodes
from metagmvae.schema.params import parse_section


def test_budget_run_scores_the_random_encoder_and_every_snapshot(mini_store, tiny_mini_packed, tmp_path):
    data = tmp_path / "mini_imagenet"
    (data / "raw").mkdir(parents=True)
    shutil.copy(mini_store / "raw" / "images.h5", data / "raw" / "images.h5")
    params = tiny_mini_params(yaml.safe_load((REPO / "params.yaml").read_text()), tiny_mini_packed)
    episodes_path = data / "episodes.h5"
    episodes.run(
        "mini_imagenet",
        parse_section(params, "episodes", "mini_imagenet"),
        mini_store / "mini_imagenet.h5",
        episodes_path,
    )
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out = tmp_path / "budget" / "run_t0.2"  # a dot in the run's name is part of the name
    simclr_budget.main(
        ["--params", str(params_path), "--images", str(data / "raw" / "images.h5"), "--episodes", str(episodes_path)]
        + ["--out", str(out), "--stats-per-class", "5"]
        + ["--minutes", "0", "1e-9", "--set", "pretrain.mini_imagenet.lr_schedule=constant"]
    )
    assert [p.name for p in (tmp_path / "budget").iterdir()] == ["run_t0.2.json"]
    record = json.loads((tmp_path / "budget" / "run_t0.2.json").read_text())
    steps = [p["step"] for p in record["points"]]
    assert steps == [0, 1]  # the random encoder, then the first step passes both marks at once
    for point in record["points"]:
        for key in ("5way_1shot", "5way_5shot"):
            assert point[key]["episodes"] == 20 and 0 <= point[key]["accuracy"] <= 100
    assert record["pretrain_config"]["lr_schedule"] == "constant" and record["train_images"] == 100
