"""The benchmark command: a JSON report with the machine, the timings, the resolved runtime and
the ratios to the official implementation measured in the same run."""

from __future__ import annotations

import json
import statistics
import textwrap
import time

import pytest
import torch

from benchmarks import bench
from metagmvae.runtime.device import Runtime

FAKE_MODEL = """
import time
import torch
from torch import nn

CALLS = []


class GMVAE(nn.Module):  # the official constructor's keywords; work that takes a known time
    def __init__(self, input_shape, unsupervised_em_iters, semisupervised_em_iters, fix_pi, hidden_size,
                 component_size, latent_size, train_mc_sample_size, test_mc_sample_size):
        super().__init__()
        assert (component_size, train_mc_sample_size, latent_size) == (5, 32, 64)
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, X):
        assert X.shape == (4, 200, 1, 28, 28)
        time.sleep(0.2)
        return self.w * X.mean(), self.w * 0

    def prediction(self, X_tr, y_tr, X_te):
        time.sleep(0.001)
        return torch.zeros(X_te.shape[:2], dtype=torch.long)
"""
FAKE_DATA = """
import numpy as np


class Data:
    def generate_test_episode(self, way, shot, query, n_episodes=1, test=False):
        x = self.x_mte[:n_episodes]  # [n, 20, 1, 28, 28]
        y = np.zeros((n_episodes, way * query), dtype=np.int64)
        return x[:, : way * shot], np.zeros((n_episodes, way * shot), np.int64), np.repeat(x[:, :1], way * query, 1), y
"""


def test_benchmark_writes_machine_timings_memory_and_the_resolved_runtime(tmp_path):
    out = tmp_path / "cpu.json"
    argv = ["--cases", "mini_imagenet_5way", "--variants", "fp32,auto", "--steps", "2", "--warmup", "0"]
    bench.main([*argv, "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["machine"]["device"] == "cpu" and report["machine"]["torch"].startswith("2.")
    assert report["settings"]["steps"] == 2 and report["official"] is None
    fp32, auto = report["results"]
    assert (fp32["case"], fp32["variant"], fp32["precision"]) == ("mini_imagenet_5way", "fp32", "fp32")
    assert fp32["channels_last"] is False  # a feature model: no convolutions, auto leaves the layout
    assert auto["precision"] in ("fp32", "bf16")
    assert len(fp32["all_seconds"]) == 2
    assert fp32["seconds"] == pytest.approx(statistics.median(fp32["all_seconds"]), abs=1e-4)  # all_seconds: 4 dp
    assert 0.1 < fp32["peak_gib"] < 16  # the child's own peak resident set, in GiB


def test_a_case_reports_the_median_of_its_timed_steps(monkeypatch):
    """Known step times, out of order: the median (0.3 s) is none of the mean (0.4), the minimum,
    the maximum, the first, the last or the middle step."""
    times = [0.9, 0.3, 0.1, 0.5, 0.2]
    monkeypatch.setattr(bench, "bench_train", lambda name, rt, warmup, steps: list(times))
    result = bench.run_case("omniglot_5way", "fp32", "cpu", warmup=0, steps=5, official=None)
    assert result["seconds"] == 0.3 == statistics.median(times)
    assert result["all_seconds"] == times  # in the order they ran


def test_official_code_is_imported_from_its_checkout_and_timed_in_the_same_run(tmp_path):
    checkout = tmp_path / "Meta-GMVAE"
    (checkout / "omniglot").mkdir(parents=True)
    (checkout / "omniglot" / "model.py").write_text(textwrap.dedent(FAKE_MODEL))
    (checkout / "omniglot" / "data.py").write_text(textwrap.dedent(FAKE_DATA))
    out = tmp_path / "cpu.json"
    argv = ["--cases", "omniglot_5way,eval_omniglot_5way_1shot", "--variants", "fp32", "--steps", "2"]
    bench.main([*argv, "--warmup", "0", "--official", str(checkout), "--out", str(out)])
    results = {(r["case"], r["variant"]): r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {(c, v) for c in ("omniglot_5way", "eval_omniglot_5way_1shot") for v in ("fp32", "official")}
    step = results[("omniglot_5way", "official")]
    assert 0.2 <= step["seconds"] < 0.5  # the fake official forward sleeps 0.2 s: the timed call ran it
    ours = results[("omniglot_5way", "fp32")]
    assert ours["x_official_time"] == round(ours["seconds"] / step["seconds"], 3)
    # 250 calls of 4 episodes, as the official evaluation loop: at least 250 x 1 ms of sleep
    assert results[("eval_omniglot_5way_1shot", "official")]["seconds"] >= 0.25


def test_table_states_what_each_variant_ran_as_and_the_ratio_to_the_official_code():
    rows = bench.with_ratios(
        [
            {"case": "omniglot_5way", "variant": "official", "seconds": 15.1, "peak_gib": 9.8},
            {"case": "omniglot_5way", "variant": "auto", "precision": "bf16", "channels_last": True}
            | {"seconds": 3.02, "peak_gib": 2.45},
            {"case": "simclr", "variant": "fp32", "precision": "fp32", "channels_last": True}
            | {"seconds": 4.0, "peak_gib": 3.0},
        ]
    )
    assert rows[1]["x_official_time"] == 0.2 and rows[1]["x_official_mem"] == 0.25
    lines = bench.table(rows).splitlines()
    assert lines[2].split()[2] == "bf16+CL" and lines[2].split()[-2:] == ["0.2", "0.25"]
    assert lines[3].split()[-2:] == ["-", "-"]  # no official measurement for this case


def test_each_timed_step_runs_the_work_after_the_warm_up():
    calls = []

    def work():
        calls.append(len(calls))
        time.sleep(0.05)

    seconds = bench._timed(work, torch.device("cpu"), warmup=2, steps=3)
    assert len(calls) == 5 and len(seconds) == 3
    assert all(0.05 <= s < 1.0 for s in seconds), seconds  # each timed call did the 50 ms of work


def test_a_training_case_times_the_training_step_itself(monkeypatch):
    """The Meta-GMVAE case times ``train.train_step`` on the paper's batch, once per timed step."""
    steps = []

    def slow_step(model, optimizer, x, **setting):
        steps.append((tuple(x.shape), setting["way"], setting["samples"]))
        time.sleep(0.05)

    monkeypatch.setattr("metagmvae.methods.meta_gmvae.train_step", slow_step)
    seconds = bench.bench_train("omniglot_5way", Runtime(torch.device("cpu"), "fp32"), warmup=1, steps=2)
    assert steps == [((4, 200, 1, 28, 28), 5, 32)] * 3  # the paper's B, M, way and S
    assert len(seconds) == 2 and all(s >= 0.05 for s in seconds)
