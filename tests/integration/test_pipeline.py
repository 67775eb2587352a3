"""The DVC pipeline end to end on a tiny profile, in a temporary copy of the repository.

Checks: `dvc repro` produces the metrics of both datasets; a second `dvc repro` runs nothing;
changing one `metatrain` parameter reruns only that model's `metatrain` and the `evaluate`
stage; `dvc metrics diff` between two commits shows the change; MLflow holds the runs; cached
features pushed to a DVC remote are pulled by a second clone, which then reruns neither
`pretrain` nor `extract`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from metagmvae.analysis.paper import PAPER_RESULTS
from metagmvae.analysis.report import SEEDS, load_seeds, seeds_cell

BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path) -> str:
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=str(cwd),
        DVC_NO_ANALYTICS="1",
        METAGMVAE_TRACKING="on",
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def repo(pipeline_params, tmp_path_factory) -> Path:
    """A git + DVC copy of the repository's tracked files with the tiny profile committed."""
    dest = tmp_path_factory.mktemp("pipeline") / "repo"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "models/", "metrics/", "plots/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / "params.yaml").write_text(yaml.safe_dump(pipeline_params, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["git", "init", "-q"], dest)
    run([*git, "add", "-A"], dest)
    run([*git, "commit", "-qm", "tiny"], dest)
    return dest


@pytest.fixture(scope="module")
def first_repro(repo) -> str:
    return run(["dvc", "repro"], repo)


def test_repro_produces_metrics_for_every_setting(repo, first_repro):
    assert stages_run(first_repro) == {
        "download@omniglot",
        "download@mini_imagenet",
        "augment",
        "pretrain",
        "extract",
        "episodes@omniglot",
        "episodes@mini_imagenet",
        "metatrain@omniglot_5way",
        "metatrain@omniglot_10way",
        "metatrain@mini_imagenet_5way",
        "evaluate@omniglot",
        "evaluate@mini_imagenet",
        "related@lasium_omniglot",
        "related@lasium_mini_imagenet",
        "related@leo_mini_imagenet",
        "related@leo_mini_imagenet_5shot",
        "related@sib_mini_imagenet",
        "related@sib_mini_imagenet_5shot",
        "report",
    }
    metrics = json.loads((repo / "metrics" / "omniglot.json").read_text())
    for method in ("meta_gmvae", "pixel_1nn"):
        assert sorted(metrics[method]) == ["10way_1shot", "10way_5shot", "5way_1shot", "5way_5shot"]
        for res in metrics[method].values():
            assert res["episodes"] == 20 and 0 <= res["accuracy"] <= 100 and res["ci95"] >= 0
    # cross-way: the K = 5 model on the 10-way episodes, the K = 10 model on the 5-way ones
    assert sorted(metrics["meta_gmvae_trained_5way"]) == ["10way_1shot", "10way_5shot"]
    assert sorted(metrics["meta_gmvae_trained_10way"]) == ["5way_1shot", "5way_5shot"]
    assert all(res["episodes"] == 20 for res in metrics["meta_gmvae_trained_5way"].values())
    # the pixel baseline is far above chance even on 20 characters
    assert metrics["pixel_1nn"]["5way_5shot"]["accuracy"] > 40
    for name in ("omniglot_5way", "omniglot_10way"):
        assert sorted(p.name for p in (repo / "models" / "omniglot" / name).iterdir()) == [
            "best_1shot.pt",
            "best_5shot.pt",
            "history.json",
            "summary.json",
        ]
        assert (repo / "plots" / "omniglot" / name / "reconstructions.png").stat().st_size > 1000
        train_metrics = json.loads((repo / "metrics" / "train" / f"{name}.json").read_text())
        assert train_metrics["steps"] == 6 and train_metrics["train_seconds"] > 0
    mini = json.loads((repo / "metrics" / "mini_imagenet.json").read_text())
    for method in ("meta_gmvae", "logistic_regression"):
        assert sorted(mini[method]) == ["5way_1shot", "5way_5shot"]
        assert all(res["episodes"] == 20 for res in mini[method].values())
    assert sorted(p.name for p in (repo / "models" / "mini_imagenet" / "mini_imagenet_5way").iterdir()) == [
        "best_1shot.pt",  # every test shot uses the 1-shot selection
        "history.json",
        "summary.json",
    ]
    own_shots = {  # LEO and SIB: one model per training shot, as their papers
        ("lasium_omniglot", "lasium"): ["5way_1shot", "5way_5shot"],
        ("leo_mini_imagenet", "leo"): ["5way_1shot"],
        ("leo_mini_imagenet_5shot", "leo"): ["5way_5shot"],
        ("sib_mini_imagenet", "sib"): ["5way_1shot"],
        ("sib_mini_imagenet_5shot", "sib"): ["5way_5shot"],
    }
    for (name, method), settings in own_shots.items():
        related = json.loads((repo / "metrics" / "related" / f"{name}.json").read_text())[method]
        assert sorted(related) == settings  # on the same 20 test episodes as Meta-GMVAE
        assert all(res["episodes"] == 20 and 0 <= res["accuracy"] <= 100 for res in related.values())
    assert (repo / "plots" / "related" / "lasium_omniglot" / "tasks.png").read_bytes()[:4] == b"\x89PNG"
    # every evaluation wrote its episodes' results beside its metrics, on the same episodes
    per_episode = [f"metrics/episodes/{d}.json" for d in ("omniglot", "mini_imagenet")]
    per_episode += [
        f"metrics/related/episodes/{name}.json"
        for name in yaml.safe_load((repo / "params.yaml").read_text())["related"]
    ]
    digests = {}
    for rel in per_episode:
        doc = json.loads((repo / rel).read_text())
        for method, settings in doc["results"].items():
            for key, entry in settings.items():
                assert len(entry["correct"]) == 20, (rel, method, key)
                digests.setdefault((doc["dataset"], key), set()).add(entry["episodes_sha256"])
        assert (repo / rel).stat().st_size < 6000, rel
    assert all(len(found) == 1 for found in digests.values()), digests  # one set of episodes per setting
    assert json.loads((repo / "metrics" / "train" / "simclr.json").read_text())["epochs"] == 2
    assert not list((repo / ".resume").glob("*")), "resume state is removed after a finished run"


def test_report_plots_and_stage_times(repo, first_repro):
    report = (repo / "metrics" / "report.md").read_text()
    metrics = json.loads((repo / "metrics" / "omniglot.json").read_text())
    ours, pixel = metrics["meta_gmvae"]["5way_1shot"], metrics["pixel_1nn"]["5way_1shot"]
    paper, paper_ci = PAPER_RESULTS["omniglot"]["5way_1shot"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    seeds = load_seeds(repo / SEEDS, params)  # the committed seed record, judged against these params
    cells = [
        f"{ours['accuracy']:.2f} ± {ours['ci95']:.2f}",
        *([seeds_cell(seeds, "omniglot", "5way_1shot")] * bool(seeds)),
    ]
    cells += [
        f"{paper:.2f} ± {paper_ci:.2f}",
        f"{ours['accuracy'] - paper:+.2f}",
        f"{pixel['accuracy']:.2f} ± {pixel['ci95']:.2f}",
    ]
    assert "| 5-way 1-shot | " + " | ".join(cells) + " |" in report
    assert "| LASIUM | 5-way 1-shot |" in report and "| SIB (supervised, transductive) | 5-way 1-shot |" in report
    times = {p.stem for p in (repo / "metrics" / "time").glob("*.json")}
    assert {"augment", "metatrain-omniglot_5way", "evaluate-mini_imagenet", "pretrain-mini_imagenet"} <= times
    assert "| metatrain-omniglot_5way |" in report and "| **total** |" in report
    head = run(["git", "rev-parse", "HEAD"], repo)[:7]  # the commit without results
    assert f"No paired differences against `HEAD ({head})`: it has no per-episode results" in report
    cross = metrics["meta_gmvae_trained_5way"]["10way_1shot"]
    own = metrics["meta_gmvae"]["10way_1shot"]
    assert f"| 10-way 1-shot | 5-way | {cross['accuracy']:.2f} ± {cross['ci95']:.2f} | {own['accuracy']:.2f}" in report
    for dataset in ("omniglot", "mini_imagenet"):
        for png in ("accuracy.png", "embedding.png"):
            assert (repo / "plots" / dataset / png).read_bytes()[:4] == b"\x89PNG"
    header = (repo / "plots" / "omniglot" / "accuracy_by_shot.csv").read_text().splitlines()[0]
    assert header.startswith("shot,meta_gmvae_5way,pixel_1nn_5way,paper_5way")
    val = (repo / "plots" / "omniglot" / "curves" / "omniglot_5way-val.csv").read_text().splitlines()
    assert val[0] == "step,1shot,5shot" and [line.split(",")[0] for line in val[1:]] == ["3", "6"]
    out = run(["dvc", "plots", "show", "--json", "--split"], repo)  # stdout (the JSON), then warnings
    rendered, _ = json.JSONDecoder().raw_decode(out)
    assert any("Validation accuracy" in key for key in rendered["data"]), sorted(rendered["data"])


def test_second_repro_runs_nothing(repo, first_repro):
    out = run(["dvc", "repro"], repo)
    assert stages_run(out) == set()
    assert "up to date" in run(["dvc", "status"], repo)


def test_changing_a_metatrain_param_reruns_only_that_model_and_evaluate(repo, first_repro):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run([*git, "add", "-A"], repo)
    run([*git, "commit", "-qm", "first results"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["metatrain"]["omniglot_5way"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo)
    assert stages_run(out) == {"metatrain@omniglot_5way", "evaluate@omniglot", "report"}
    # the report's paired differences against the previous commit: the retrained 5-way model
    # moves, everything else was re-evaluated on the same episodes and agrees on every one
    report = (repo / "metrics" / "report.md").read_text()
    head = run(["git", "rev-parse", "HEAD"], repo)[:7]
    assert f"Paired differences against `HEAD ({head})`" in report
    omniglot = report[report.index("### Omniglot") : report.index("### Mini-ImageNet")]
    same = "0.00 [0.00, 0.00]"
    assert re.search(rf"\| 10-way 1-shot \| {re.escape(same)} \| {re.escape(same)} \| ", omniglot), omniglot
    run([*git, "add", "-A"], repo)
    run([*git, "commit", "-qm", "lr 0.002"], repo)
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json"], repo))
    changed = diff["metrics/omniglot.json"]
    assert any(key.startswith("meta_gmvae.5way") for key in changed)
    assert not any(key.startswith("pixel_1nn") for key in changed)  # same episodes, same baseline


def test_mlflow_holds_the_runs(repo, first_repro):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("meta-gmvae")
    runs = client.search_runs([exp.experiment_id])
    stages = sorted(r.data.tags["stage"] for r in runs)
    assert stages.count("metatrain") >= 2 and stages.count("evaluate") >= 1
    assert all(r.info.status == "FINISHED" for r in runs)
    train_run = next(r for r in runs if r.data.tags["stage"] == "metatrain")
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", train_run.data.tags["git_commit"])
    assert train_run.data.params["lr"] in ("0.001", "0.002")
    history = client.get_metric_history(train_run.info.run_id, "train/loss")
    assert [m.step for m in history] == [2, 4, 6]
    artifacts = {a.path for a in client.list_artifacts(train_run.info.run_id, "plots")}
    assert {"plots/training.png", "plots/reconstructions.png"} <= artifacts


def test_shared_features_are_pulled_not_recomputed(repo, first_repro, tmp_path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["dvc", "remote", "add", "-d", "team", str(tmp_path / "remote")], repo)
    run([*git, "add", "-A"], repo)
    run([*git, "commit", "-qm", "results and the team remote", "--allow-empty"], repo)
    run(["dvc", "push"], repo)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run(["dvc", "pull"], clone)
    features = Path("data") / "mini_imagenet" / "mini_imagenet.h5"
    assert (clone / features).read_bytes() == (repo / features).read_bytes()
    assert stages_run(run(["dvc", "repro"], clone)) == set()
    # a teammate's change to the meta-learner reuses the pulled features
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["metatrain"]["mini_imagenet_5way"]["lr"] = 0.0003
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_run(run(["dvc", "repro"], clone)) == {
        "metatrain@mini_imagenet_5way",
        "evaluate@mini_imagenet",
        "report",
    }


def _experiments(shown: list[dict]) -> dict[str, dict]:
    """``dvc exp show --json`` -> ``{experiment name: its data}`` (DVC 3 layout)."""
    found = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name"):
                    found[rev["name"]] = rev["data"]
    return found


@pytest.fixture(scope="module")
def sweep(repo, first_repro) -> dict[str, dict]:
    """A queued two-point sweep over the 5-way model's em_iters (2, 3): ``dvc exp show`` by name."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run([*git, "add", "-A"], repo)
    run([*git, "commit", "-qm", "before the sweep", "--allow-empty"], repo)
    for iters in (2, 3):
        run(
            [
                *("dvc", "exp", "run", "--queue", "--name", f"em{iters}"),
                *("-S", f"metatrain.omniglot_5way.train_em_iters={iters}"),
            ],
            repo,
        )
    run(["dvc", "queue", "start", "--jobs", "1"], repo)
    deadline = time.monotonic() + 600
    while True:
        status = run(["dvc", "queue", "status"], repo)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status
    return _experiments(json.loads(run(["dvc", "exp", "show", "--json"], repo)))


def test_queued_sweep_runs_every_point_into_dvc_and_mlflow(repo, sweep):
    import mlflow

    exps = sweep
    assert {"em2", "em3"} <= set(exps)
    for iters in (2, 3):
        data = exps[f"em{iters}"]
        assert data["params"]["params.yaml"]["data"]["metatrain"]["omniglot_5way"]["train_em_iters"] == iters
        result = data["metrics"]["metrics/omniglot.json"]["data"]["meta_gmvae"]["5way_1shot"]
        assert 0 <= result["accuracy"] <= 100 and result["episodes"] == 20

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("meta-gmvae").experiment_id])
    tagged = {(r.data.tags.get("dvc_experiment"), r.data.tags["stage"]) for r in runs}
    for name in ("em2", "em3"):
        assert {(name, "metatrain"), (name, "evaluate")} <= tagged, tagged


def test_compare_reads_two_experiments_by_name(repo, sweep):
    """`python -m metagmvae.analysis.compare em2 em3`: the per-episode files committed with each experiment,
    paired; what the experiments share (the 10-way model, the baseline) agrees episode by episode."""
    out = run(
        [sys.executable, "-m", "metagmvae.analysis.compare", "em2", "em3", "--dataset", "omniglot", "--json"], repo
    )
    rows = {(r["method"], r["setting"]): r for r in json.loads(out)}
    metrics = {  # Omniglot: the evaluate stage's methods and LASIUM
        name: sweep[name]["metrics"]["metrics/omniglot.json"]["data"]
        | sweep[name]["metrics"]["metrics/related/lasium_omniglot.json"]["data"]
        for name in ("em2", "em3")
    }
    for (method, setting), r in rows.items():
        expected = metrics["em3"][method][setting]["accuracy"] - metrics["em2"][method][setting]["accuracy"]
        assert r["paired"]["mean"] == pytest.approx(expected, abs=0.011), (method, setting)
        assert r["paired"]["episodes"] == 20
    # what the experiments share agrees on every episode: the 10-way model and the pixel baseline
    # were evaluated again in each of them, LASIUM was not rerun
    identical = {"episodes": 20, "high": 0, "improved": 0, "low": 0, "mean": 0, "worse": 0}
    for key in (("pixel_1nn", "5way_1shot"), ("meta_gmvae", "10way_5shot"), ("meta_gmvae_trained_10way", "5way_1shot")):
        assert rows[key]["paired"] == identical, key
    assert rows[("lasium", "5way_1shot")]["paired"] == identical
    assert ("meta_gmvae", "5way_1shot") in rows and ("meta_gmvae_trained_5way", "10way_1shot") in rows

    text = run([sys.executable, "-m", "metagmvae.analysis.compare", "em2", "em3", "--method", "pixel_1nn"], repo)
    assert "a = em2 (" in text and "b = em3 (" in text and "paired t" in text
    line = next(row for row in text.splitlines() if row.startswith("omniglot  pixel_1nn  5way_1shot"))
    assert line.split()[5:8] == ["0.00", "[0.00,", "0.00]"]

    within = run(
        [sys.executable, "-m", "metagmvae.analysis.compare", "--methods", "pixel_1nn", "meta_gmvae", "em3", "--json"],
        repo,
    )
    assert {r["setting"] for r in json.loads(within) if r["dataset"] == "omniglot"} == {
        "5way_1shot",
        "5way_5shot",
        "10way_1shot",
        "10way_5shot",
    }
