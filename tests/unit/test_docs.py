"""README.md and docs/: every generated block equals what its records give, the README's results
agree with metrics/*.json cell by cell (read independently of the generator), a hand-edited
metric fails both, the README is short and in the agreed order, and links resolve."""

import json
import re
import shutil

import pytest
import yaml
from conftest import REPO

from metagmvae.analysis.report import DATASETS, METHOD_NAMES
from metagmvae.cli import docs
from metagmvae.runtime.config import flatten

TITLES = {title: dataset for dataset, title in DATASETS.items()}
COLUMNS = {name: method for method, name in METHOD_NAMES.items()} | {"Meta-GMVAE": "meta_gmvae"}
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]


def block(text: str, name: str) -> str:
    return re.search(rf"<!-- generated: {name} .*?-->\n(.*?)<!-- end generated: {name} -->", text, re.S)[1]


def recorded(repo, dataset: str, method: str, setting: str) -> list[dict]:
    """Every result of ``method`` at ``setting`` on ``dataset`` in the metrics files."""
    files = [repo / "metrics" / f"{dataset}.json"]
    related = (yaml.safe_load((repo / "params.yaml").read_text()) or {}).get("related", {})
    files += [repo / "metrics" / "related" / f"{n}.json" for n, s in related.items() if s["dataset"] == dataset]
    found = []
    for path in files:
        if path.exists():
            results = json.loads(path.read_text()).get(method, {})
            found += [results[setting]] if setting in results else []
    return found


def disagreements(repo) -> list[str]:
    """Cells of the README's results block that no metrics file holds."""
    text = block((repo / "README.md").read_text(), "results")
    bad, dataset, header = [], None, None
    for line in text.splitlines():
        if title := re.fullmatch(r"\*\*(.+)\*\*", line):
            dataset, header = TITLES[title[1]], None
        elif line.startswith("| setting"):
            header = [c.strip() for c in line.strip("|").split("|")]
        elif line.startswith("| ") and header:
            cells = [c.strip() for c in line.strip("|").split("|")]
            way, shot = re.fullmatch(r"(\d+)-way (\d+)-shot", cells[0]).groups()
            for column, cell in zip(header, cells):
                if column not in COLUMNS or cell == "-":
                    continue
                results = recorded(repo, dataset, COLUMNS[column], f"{way}way_{shot}shot")
                if cell not in {f"{r['accuracy']:.2f} ± {r['ci95']:.2f}" for r in results}:
                    bad.append(f"{dataset} {column} {cells[0]}: README {cell}, metrics {results}")
    return bad


def test_every_generated_block_matches_its_records():
    """Regenerate with `metagmvae docs` (bash scripts/repro.sh does it after the pipeline)."""
    assert docs.stale(REPO) == []


def test_the_readme_results_agree_with_the_metrics_files():
    assert "| 5-way 1-shot |" in block((REPO / "README.md").read_text(), "results")
    assert disagreements(REPO) == []


@pytest.fixture
def copy_of_repo(tmp_path):
    for name in ("README.md", "CHANGELOG.md", "params.yaml", "docs", "metrics", "benchmarks"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def test_a_hand_edited_metric_fails_both_checks(copy_of_repo, capsys):
    assert docs.stale(copy_of_repo) == [] and disagreements(copy_of_repo) == []
    path = copy_of_repo / "metrics" / "omniglot.json"
    metrics = json.loads(path.read_text())
    metrics["meta_gmvae"]["5way_1shot"]["accuracy"] += 1.5
    path.write_text(json.dumps(metrics))
    assert "README.md: block 'results' is stale" in docs.stale(copy_of_repo)
    assert [d for d in disagreements(copy_of_repo) if d.startswith("omniglot Meta-GMVAE 5-way 1-shot")]
    assert docs.main(["--check", "--repo", str(copy_of_repo)]) == 1
    assert "block 'results' is stale" in capsys.readouterr().err
    assert docs.main(["--repo", str(copy_of_repo)]) == 0  # regenerating repairs it
    assert docs.stale(copy_of_repo) == [] and disagreements(copy_of_repo) == []


def test_an_unknown_block_is_refused(copy_of_repo, capsys):
    readme = copy_of_repo / "README.md"
    unknown = "<!-- generated: nosuch (metagmvae docs) -->\n<!-- end generated: nosuch -->\n"
    readme.write_text(readme.read_text() + "\n" + unknown)
    assert docs.main(["--repo", str(copy_of_repo)]) == 2
    assert "unknown generated block 'nosuch'" in capsys.readouterr().err


def test_the_readme_is_short_and_in_the_agreed_order():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["Run it", "Results", "Change one thing and compare", "Profiles", "Documentation"]
    for name in ("quick-time", "results", "headline", "profiles"):
        assert block(text, name).strip()
    assert re.search(r"dvc exp run .*-S ", text) and "metagmvae compare" in text and "dvc metrics diff" in text


def test_the_parameters_page_lists_every_key_of_params_yaml():
    page = (REPO / "docs" / "parameters.md").read_text()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, items in params.items():
        keys = {k.split(".", 1)[1] if "." in k else k for k in flatten(items)} if section != "report" else set(items)
        for key in keys:
            top = key.split(".")[0]
            assert f"| `{key}` |" in page or f"| `{top}` |" in page, f"{section}: {key}"


def test_links_resolve_and_no_machine_folder_is_named():
    for page in PAGES:
        text = page.read_text()
        assert "/work/" not in text, page
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: {target}"
