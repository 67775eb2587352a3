"""The report: results tables with the paper's values and differences, stage wall times, the
commit it was written at, and the paired table left out when nothing changed."""

import copy
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

from metagmvae.analysis import paper, report
from metagmvae.analysis.compare import interval, signed
from metagmvae.analysis.paper import PAPER_RESULTS
from metagmvae.analysis.plots import accuracy_by_shot_table
from metagmvae.analysis.stats import paired_difference
from metagmvae.data.episodes import parse_episode_key, sample_episodes
from metagmvae.evaluation.episode_results import EpisodeResults, Table, parse
from metagmvae.runtime.config import ConfigError
from metagmvae.schema.report import report_config

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())

OMNIGLOT = {
    "meta_gmvae": {
        "5way_1shot": {"accuracy": 72.29, "ci95": 1.0, "episodes": 1000},
        "20way_5shot": {"accuracy": 60.25, "ci95": 0.38, "episodes": 1000},
    },
    "pixel_1nn": {
        "5way_1shot": {"accuracy": 45.33, "ci95": 0.58, "episodes": 1000},
        "20way_5shot": {"accuracy": 47.0, "ci95": 0.29, "episodes": 1000},
    },
}


@pytest.fixture
def metrics_dir(tmp_path):
    (tmp_path / "omniglot.json").write_text(json.dumps(OMNIGLOT))
    (tmp_path / "time").mkdir()
    for stage, seconds in (("augment", 60.0), ("metatrain-omniglot_5way", 300.0)):
        record = {"stage": stage, "seconds": seconds, "device": "cpu: test CPU, 2 threads"}
        (tmp_path / "time" / f"{stage}.json").write_text(json.dumps(record))
    return tmp_path


def paper_cell(dataset: str, key: str) -> tuple[str, float]:
    """The paper's value as the table prints it, and the accuracy (from :mod:`metagmvae.analysis.paper`)."""
    accuracy, ci = PAPER_RESULTS[dataset][key]
    return f"{accuracy:.2f} ± {ci:.2f}", accuracy


def test_table_rows_hold_accuracy_paper_difference_and_baselines():
    lines = report.results_table("omniglot", OMNIGLOT).splitlines()
    assert lines[0] == "| setting | Meta-GMVAE | paper | difference | pixel 1-NN |"
    paper, published = paper_cell("omniglot", "5way_1shot")
    assert lines[2] == f"| 5-way 1-shot | 72.29 ± 1.00 | {paper} | {72.29 - published:+.2f} | 45.33 ± 0.58 |"
    paper, published = paper_cell("omniglot", "20way_5shot")  # rows ordered by way, then shot
    assert lines[3] == f"| 20-way 5-shot | 60.25 ± 0.38 | {paper} | {60.25 - published:+.2f} | 47.00 ± 0.29 |"
    assert len(lines) == 4


def test_committed_report_is_built_from_the_committed_metrics(monkeypatch):
    """metrics/report.md is exactly what the report stage builds from metrics/*.json,
    metrics/related/*.json and metrics/time/*.json (at the commit it names), with the paired
    differences against the revision it names (its per-episode results, read from git)."""
    monkeypatch.chdir(REPO)
    text = (REPO / "metrics" / "report.md").read_text()
    commit = re.search(r"Written by the `report` stage at (.*)\.\n", text)[1]
    related = yaml.safe_load((REPO / "params.yaml").read_text()).get("related", {})
    baseline = None
    if named := re.search(r"`(\S+) \(([0-9a-f]{7,40})\)`", text):
        found = report.load_baseline(named[2], REPO / "metrics", related)
        baseline = report.Baseline(f"{named[1]} ({named[2]})", found.table, found.note)
    seeds = report.load_seeds(REPO / report.SEEDS, PARAMS)
    assert report.build_report(REPO / "metrics", commit, related, baseline, seeds) == text
    # and the numbers in it are the metrics files' own
    omniglot = json.loads((REPO / "metrics" / "omniglot.json").read_text())
    result = omniglot["meta_gmvae"]["5way_1shot"]
    assert f"| 5-way 1-shot | {result['accuracy']:.2f} ± {result['ci95']:.2f} |" in text


def test_report_lists_stage_times_device_and_commit(metrics_dir):
    text = report.build_report(metrics_dir, "commit `abc123`")
    assert "at commit `abc123`." in text and "### Omniglot" in text and "Mini-ImageNet" not in text
    assert "| metatrain-omniglot_5way | 5.0 min | cpu: test CPU, 2 threads |" in text
    assert "| **total** | **6.0 min** | |" in text
    body = report.report_body(text)  # what docs/results.md shows: no title, no commit line
    assert body.startswith(report.INTRO) and "abc123" not in body and body.endswith("| **total** | **6.0 min** | |")


def test_the_commit_line_names_a_clean_commit_or_says_uncommitted_changes(tmp_path):
    assert report.commit_text(tmp_path) == "an unversioned folder (no git commit)"
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    for name in ("params.yaml", "dvc.lock", "metrics/omniglot.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("a\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    for name in ("dvc.lock", "metrics/omniglot.json"):  # what `dvc repro` itself rewrites
        (tmp_path / name).write_text("b\n")
    assert report.commit_text(tmp_path) == f"commit `{sha}`"
    (tmp_path / "params.yaml").write_text("b\n")  # an input changed: said plainly
    assert report.commit_text(tmp_path) == f"commit `{sha}` with uncommitted changes (params.yaml)"


def test_accuracy_by_shot_table_has_a_column_per_method_and_way():
    paper = {key: PAPER_RESULTS["omniglot"][key] for key in ("5way_1shot", "20way_5shot")}
    header, rows = accuracy_by_shot_table(OMNIGLOT, paper)
    assert header == ["shot", "meta_gmvae_5way", "pixel_1nn_5way", "paper_5way"] + [
        "meta_gmvae_20way",
        "pixel_1nn_20way",
        "paper_20way",
    ]
    one, five = paper["5way_1shot"][0], paper["20way_5shot"][0]
    assert rows == [[1, 72.29, 45.33, one, None, None, None], [5, None, None, None, 60.25, 47.0, five]]


def result(accuracy: float, ci95: float) -> dict:
    return {"accuracy": accuracy, "ci95": ci95, "episodes": 1000}


def test_related_methods_join_their_dataset_with_their_own_papers_values(metrics_dir):
    (metrics_dir / "related").mkdir()
    runs = {
        "sib_mini_imagenet": {"sib": {"5way_1shot": result(29.26, 0.45), "5way_5shot": result(36.37, 0.44)}},
        "sib_mini_imagenet_5shot": {"sib": {"5way_1shot": result(27.0, 0.4), "5way_5shot": result(38.0, 0.5)}},
        "lasium_omniglot": {"lasium": {"5way_1shot": result(60.5, 0.9)}},
        "stale": {"sib": {"5way_1shot": result(1.0, 0.1)}},  # not in params: ignored
    }
    for name, metrics in runs.items():
        (metrics_dir / "related" / f"{name}.json").write_text(json.dumps(metrics))
    related = {
        "sib_mini_imagenet": {"method": "sib", "dataset": "mini_imagenet", "shot": 1},
        "sib_mini_imagenet_5shot": {"method": "sib", "dataset": "mini_imagenet", "shot": 5},
        "lasium_omniglot": {"method": "lasium", "dataset": "omniglot", "shot": 1},
    }
    text = report.build_report(metrics_dir, "abc123", related)
    omniglot = text[text.index("### Omniglot") : text.index("### Mini-ImageNet")]
    assert "| setting | Meta-GMVAE | paper | difference | pixel 1-NN | LASIUM |" in omniglot
    assert "| 5-way 1-shot | 72.29 ± 1.00 | 94.92 ± 0.42 | -22.63 | 45.33 ± 0.58 | 60.50 ± 0.90 |" in omniglot
    assert "| LASIUM | 5-way 1-shot | 1-shot | 60.50 ± 0.90 | - |" in omniglot  # no traceable table
    assert "LASIUM (Khodadadeh et al., ICLR 2021): no number shown" in omniglot
    mini = text[text.index("### Mini-ImageNet") : text.index("## Wall time")]
    # Each setting from the model trained at its shot: 1-shot from the 1-shot run, 5-shot from the 5-shot run.
    assert "| 5-way 1-shot | - | 42.82 ± 0.56 | - | 29.26 ± 0.45 |" in mini
    assert "| 5-way 5-shot | - | 55.73 ± 0.48 | - | 38.00 ± 0.50 |" in mini
    sib = "| SIB (supervised, transductive) |"
    assert (
        f"{sib} 5-way 1-shot | 1-shot | 29.26 ± 0.45 | 67.92 ± 0.55 (S1); 62.59 ± 1.02 (S2); 63.26 ± 1.07 (S3) |"
        in mini
    )
    assert (
        f"{sib} 5-way 5-shot | 5-shot | 38.00 ± 0.50 | 78.92 ± 0.37 (S1); 75.43 ± 0.67 (S2); 75.73 ± 0.71 (S3) |"
        in mini
    )
    assert "S2: Hu et al., Empirical Bayes Transductive Meta-Learning with Synthetic Gradients, the version" in mini
    assert "Table 2 (Mini-ImageNet test set), SIB, T = 3 synthetic-gradient steps, Conv-4 features" in mini
    assert "600 test tasks." in mini
    assert "so a row measures the meta-learner, not the backbone" in text


def test_every_published_related_number_names_its_source():
    for datasets in paper.RELATED_PUBLISHED.values():
        for entries in datasets.values():
            for entry in entries:
                source = entry.source
                assert source.paper and source.version and source.table.startswith("Table") and source.row
                assert source.test_tasks is None or source.test_tasks > 0
    assert [(e.setting, e.accuracy, e.ci95) for e in paper.published("leo", "mini_imagenet")][:2] == [
        ("5way_1shot", 60.06, 0.05),
        ("5way_5shot", 75.72, 0.18),
    ]
    assert paper.published("lasium", "omniglot") == () and "lasium" in paper.UNPUBLISHED_REASON
    assert paper.first_published("sib", "mini_imagenet") == {"5way_1shot": (67.92, 0.55), "5way_5shot": (78.92, 0.37)}


# ---------------------------------------------------------------- paired differences and cross-way


def _per_episode(metrics_dir, results: dict[str, dict[str, np.ndarray]]) -> Table:
    """Write ``metrics_dir/episodes/omniglot.json`` with ``{method: {setting: accuracies}}`` on
    fixed 20-way 5-shot / 5-way 1-shot episodes; returns it as a table."""
    (metrics_dir / "episodes.h5").write_bytes(b"episodes")
    out = EpisodeResults("omniglot", metrics_dir / "episodes.h5")
    for method, by_setting in results.items():
        for key, acc in by_setting.items():
            way, shot = parse_episode_key(key)
            out.add(method, sample_episodes(np.random.default_rng(way), len(acc), 80, 20, way, shot, 15), acc)
    return parse(out.write_beside(metrics_dir / "omniglot.json").read_text(), "baseline")


def _accuracies(way: int, shift: int = 0, n: int = 200, noise: int = 0) -> np.ndarray:
    """Per-episode accuracies with a shared difficulty; ``noise`` seeds a per-run jitter of +-2 queries."""
    queries = 15 * way
    correct = np.random.default_rng(7).integers(queries // 3, queries - 5, n) + shift
    if noise:
        correct += np.random.default_rng(noise).integers(-2, 3, n)
    return np.clip(correct, 0, queries) / queries


def test_paired_differences_against_the_baseline_sit_beside_the_results(metrics_dir):
    before = {"meta_gmvae": {"5way_1shot": _accuracies(5)}, "pixel_1nn": {"5way_1shot": _accuracies(5, 1)}}
    baseline = report.Baseline("HEAD (abc1234)", _per_episode(metrics_dir, before))
    after = {"meta_gmvae": {"5way_1shot": _accuracies(5, 3, noise=1)}, "pixel_1nn": {"5way_1shot": _accuracies(5, 1)}}
    _per_episode(metrics_dir, after)
    text = report.build_report(metrics_dir, "abc123", baseline=baseline)
    d = paired_difference(_accuracies(5), _accuracies(5, 3, noise=1))
    assert "Paired differences against `HEAD (abc1234)`" in text and "(paired t)" in text
    assert "| setting | Meta-GMVAE | pixel 1-NN |" in text
    assert f"| 5-way 1-shot | {signed(d.mean)} {interval(d)} | 0.00 [0.00, 0.00] |" in text
    assert d.mean == pytest.approx(4.0, abs=0.3) and 3.5 < d.low < d.high < 4.5  # 3 of 75 queries more, +-2


def test_a_rerun_identical_to_the_baseline_gets_one_line_not_a_table_of_zeros(metrics_dir):
    results = {"meta_gmvae": {"5way_1shot": _accuracies(5)}, "pixel_1nn": {"5way_1shot": _accuracies(5, 1)}}
    baseline = report.Baseline("HEAD (abc1234)", _per_episode(metrics_dir, results))
    text = report.build_report(metrics_dir, "abc123", baseline=baseline)  # the same results on disk
    assert "Every result is identical, episode by episode, to `HEAD (abc1234)`'s" in text
    assert "Paired differences" not in text and "0.00 [0.00, 0.00]" not in text
    changed = {**results, "meta_gmvae": {"5way_1shot": _accuracies(5, 1)}}  # one method changed: a table
    _per_episode(metrics_dir, changed)
    text = report.build_report(metrics_dir, "abc123", baseline=baseline)
    assert "Paired differences against `HEAD (abc1234)`" in text and "| 0.00 [0.00, 0.00] |" in text


def test_results_on_other_episodes_are_marked_not_compared(metrics_dir):
    baseline = report.Baseline(
        "HEAD (abc1234)", _per_episode(metrics_dir, {"meta_gmvae": {"5way_1shot": _accuracies(5)}})
    )
    _per_episode(metrics_dir, {"meta_gmvae": {"5way_1shot": _accuracies(5, n=100)}})  # 100 episodes, not 200
    assert "| 5-way 1-shot | episodes differ |" in report.build_report(metrics_dir, "abc123", baseline=baseline)


def test_cross_way_results_get_their_own_table_with_the_paired_difference(metrics_dir):
    own, cross = _accuracies(20, 0), _accuracies(20, -9, noise=2)
    _per_episode(metrics_dir, {"meta_gmvae": {"20way_5shot": own}, "meta_gmvae_trained_5way": {"20way_5shot": cross}})
    metrics = dict(
        OMNIGLOT, meta_gmvae_trained_5way={"20way_5shot": {"accuracy": 57.3, "ci95": 0.41, "episodes": 1000}}
    )
    (metrics_dir / "omniglot.json").write_text(json.dumps(metrics))
    text = report.build_report(metrics_dir, "abc123")
    d = paired_difference(own, cross)
    assert "Cross-way (the paper's Table 2, right)" in text
    assert f"| 20-way 5-shot | 5-way | 57.30 ± 0.41 | 60.25 ± 0.38 | {signed(d.mean)} {interval(d)} |" in text
    assert "| setting | Meta-GMVAE | paper | difference | pixel 1-NN |" in text  # not a column of the main table
    assert d.high < 0 and "Paired differences" not in text  # no baseline given


def test_no_previous_revision_is_stated_not_an_error(metrics_dir, tmp_path, monkeypatch):
    _per_episode(metrics_dir, {"meta_gmvae": {"5way_1shot": _accuracies(5)}})
    outside = tmp_path / "not_a_repository"
    outside.mkdir()
    monkeypatch.chdir(outside)
    baseline = report.load_baseline("HEAD", metrics_dir, {})
    assert baseline.table is None and "not a git repository" in baseline.note
    subprocess.run(["git", "init", "-q"], cwd=outside, check=True)  # a repository without commits
    baseline = report.load_baseline("HEAD", metrics_dir, {})
    assert baseline.table is None and "'HEAD': neither a git revision" in baseline.note
    text = report.build_report(metrics_dir, "abc123", baseline=baseline)
    assert "No paired differences against `HEAD`: 'HEAD': neither a git revision" in text
    assert "| 5-way 1-shot | 72.29 ± 1.00 |" in text


def test_report_section_is_validated():
    assert report_config({"report": {"baseline": "main"}}).baseline == "main"
    with pytest.raises(ConfigError, match=r"report: unknown key\(s\) \['basline'\]"):
        report_config({"report": {"baseline": "HEAD", "basline": "main"}})
    with pytest.raises(ConfigError, match="report.baseline = '  ': must name a git revision"):
        report_config({"report": {"baseline": "  "}})


def seed_record(tmp_path, params: dict | None, dataset: str = "omniglot") -> Path:
    from metagmvae.analysis.seeds import params_fingerprint

    row = {"dataset": dataset, "method": "meta_gmvae", "setting": "5way_1shot", "mean": 70.5751, "std": 1.8014}
    row |= {"per_seed": [72.2853, 68.6947, 70.7453]}
    data = {"runs": ["HEAD (0142337)", "seed1", "seed2"], "rows": [row]}
    if params is not None:
        data["params"] = {dataset: params_fingerprint(params, dataset)}
    path = tmp_path / "seeds.json"
    path.write_text(json.dumps(data))
    return path


def test_seed_spread_is_shown_beside_the_run_and_flagged_when_the_parameters_changed(tmp_path):
    params = copy.deepcopy(PARAMS)
    fresh = report.load_seeds(seed_record(tmp_path, params), params)
    assert report.seeds_cell(fresh, "omniglot", "5way_1shot") == "70.58 ± 1.80 (3 seeds at 0142337)"
    assert report.seeds_cell(fresh, "omniglot", "20way_1shot") == "not recorded"
    seed_changed = copy.deepcopy(params)
    seed_changed["metatrain"]["omniglot_5way"]["seed"] = 7  # what the seed runs differ in: still fresh
    assert report.load_seeds(seed_record(tmp_path, params), seed_changed).stale == {"omniglot": ""}
    mini_changed = copy.deepcopy(params)
    mini_changed["metatrain"]["mini_imagenet_5way"]["lr"] = 0.5  # another dataset's parameters
    assert report.load_seeds(seed_record(tmp_path, params), mini_changed).stale == {"omniglot": ""}
    changed = copy.deepcopy(params)
    changed["metatrain"]["omniglot_5way"]["val_every"] = 123
    stale = report.load_seeds(seed_record(tmp_path, params), changed)
    assert report.seeds_cell(stale, "omniglot", "5way_1shot").endswith("; **stale**: other params)")
    unrecorded = report.load_seeds(seed_record(tmp_path, None), params)
    assert report.seeds_cell(unrecorded, "omniglot", "5way_1shot").endswith("; **stale**: params not recorded)")
    assert report.load_seeds(tmp_path / "none.json", params) is None
    table = report.results_table("omniglot", {"meta_gmvae": {"5way_1shot": {"accuracy": 72.29, "ci95": 1.0}}}, fresh)
    assert "| 5-way 1-shot | 72.29 ± 1.00 | 70.58 ± 1.80 (3 seeds at 0142337) |" in table
