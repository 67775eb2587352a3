"""The report: results tables with the paper's values and differences, stage wall times, and the
README block copied from it."""

import json
import re

import pytest
import yaml
from conftest import REPO

from metagmvae import report
from metagmvae.paper import PAPER_RESULTS, RELATED_PAPER_RESULTS
from metagmvae.plots import accuracy_by_shot_table

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
    """The paper's value as the table prints it, and the accuracy (from :mod:`metagmvae.paper`)."""
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


def test_committed_report_is_built_from_the_committed_metrics():
    """metrics/report.md is exactly what the report stage builds from metrics/*.json,
    metrics/related/*.json and metrics/time/*.json (at the commit it names)."""
    text = (REPO / "metrics" / "report.md").read_text()
    commit = re.search(r"at commit `([^`]+)`", text)[1]
    related = yaml.safe_load((REPO / "params.yaml").read_text()).get("related", {})
    assert report.build_report(REPO / "metrics", commit, related) == text
    # and the numbers in it are the metrics files' own
    omniglot = json.loads((REPO / "metrics" / "omniglot.json").read_text())
    result = omniglot["meta_gmvae"]["5way_1shot"]
    assert f"| 5-way 1-shot | {result['accuracy']:.2f} ± {result['ci95']:.2f} |" in text


def test_report_lists_stage_times_device_and_commit(metrics_dir):
    text = report.build_report(metrics_dir, "abc123")
    assert "commit `abc123`" in text and "### Omniglot" in text and "Mini-ImageNet" not in text
    assert "| metatrain-omniglot_5way | 5.0 min | cpu: test CPU, 2 threads |" in text
    assert "| **total** | **6.0 min** | |" in text


def test_readme_block_is_replaced_by_the_report_tables(metrics_dir):
    text = report.build_report(metrics_dir, "abc123")
    readme = f"# title\n\nintro\n\n{report.BEGIN}\nold numbers\n{report.END}\n\nmore\n"
    updated = report.readme_with_results(readme, text)
    assert "old numbers" not in updated and updated.startswith("# title\n\nintro\n\n")
    assert "| 5-way 1-shot | 72.29 ± 1.00 |" in updated and updated.endswith(f"{report.END}\n\nmore\n")
    assert "Wall time" not in updated
    with pytest.raises(ValueError, match="results:begin"):
        report.readme_with_results("# no block\n", text)


def test_committed_readme_agrees_with_the_committed_report():
    """The README's results are generated, never typed: regenerate with
    `python -m metagmvae.report --readme README.md`."""
    readme = (REPO / "README.md").read_text()
    assert report.readme_with_results(readme, (REPO / "metrics" / "report.md").read_text()) == readme


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


def test_related_methods_join_their_dataset_with_their_own_papers_values(metrics_dir):
    (metrics_dir / "related").mkdir()
    sib = {"sib": {"5way_1shot": {"accuracy": 29.26, "ci95": 0.45, "episodes": 1000}}}
    lasium = {"lasium": {"5way_1shot": {"accuracy": 60.5, "ci95": 0.9, "episodes": 1000}}}
    (metrics_dir / "related" / "sib_mini_imagenet.json").write_text(json.dumps(sib))
    (metrics_dir / "related" / "lasium_omniglot.json").write_text(json.dumps(lasium))
    (metrics_dir / "related" / "stale.json").write_text(json.dumps(sib))  # not in params: ignored
    related = {
        "sib_mini_imagenet": {"method": "sib", "dataset": "mini_imagenet"},
        "lasium_omniglot": {"method": "lasium", "dataset": "omniglot"},
    }
    text = report.build_report(metrics_dir, "abc123", related)
    omniglot = text[text.index("### Omniglot") : text.index("### Mini-ImageNet")]
    assert "| setting | Meta-GMVAE | paper | difference | pixel 1-NN | LASIUM |" in omniglot
    paper, published = paper_cell("omniglot", "5way_1shot")
    row = f"| 5-way 1-shot | 72.29 ± 1.00 | {paper} | {72.29 - published:+.2f} | 45.33 ± 0.58 | 60.50 ± 0.90 |"
    assert row in omniglot
    lasium_paper, no_ci = RELATED_PAPER_RESULTS["lasium"]["omniglot"]["5way_1shot"]
    assert no_ci is None and f"| LASIUM | 5-way 1-shot | 60.50 ± 0.90 | {lasium_paper:.2f} |" in omniglot
    mini = text[text.index("### Mini-ImageNet") : text.index("## Wall time")]
    assert f"| 5-way 1-shot | - | {paper_cell('mini_imagenet', '5way_1shot')[0]} | - | 29.26 ± 0.45 |" in mini
    sib_paper = "{:.2f} ± {:.2f}".format(*RELATED_PAPER_RESULTS["sib"]["mini_imagenet"]["5way_1shot"])
    assert f"| SIB (supervised, transductive) | 5-way 1-shot | 29.26 ± 0.45 | {sib_paper} |" in mini
    assert "so a row measures the meta-learner, not the backbone" in text
