"""dvc.yaml lists, for every stage, the library code that computes the stage's outputs, so that
editing any of it makes `dvc repro` rerun the stage (and nothing else)."""

import ast
from pathlib import Path

import pytest
import yaml
from conftest import REPO, expanded_stages

# Modules whose edits cannot change what a stage computes; dvc.yaml leaves them out on purpose
# so that editing them does not rerun hours of training.
NOT_COMPUTING = {
    "metagmvae.cli.validate": "checks params.yaml and stops on errors",
    "metagmvae.schema.params": "checks params.yaml and stops on errors",
    "metagmvae.runtime.config": "reads and checks parameter sections",
    "metagmvae.runtime.tracking": "MLflow logging",
    "metagmvae.runtime.walltime": "stage wall-time records (not cached)",
    "metagmvae.pipeline.shared": "stage command lines, error messages and wall-time records",
    "metagmvae.runtime.progress": "progress bars",
    "metagmvae.analysis.plots": "figures for people (the plot data are computed elsewhere)",
    "metagmvae.runtime.io": "atomic, deterministic file writes",
    "metagmvae.analysis.paper": "published numbers quoted beside ours",
    "metagmvae.runtime.command": "command-line parsing and one-line error messages",
}
# The code that reads one dataset's sources or store. A module that dispatches on the dataset
# imports all of them; a stage working on one dataset lists only its own.
DATASET_CODE = {
    "omniglot": {"metagmvae/data/omniglot.py"},
    "mini_imagenet": {"metagmvae/data/mini_imagenet.py", "metagmvae/data/features.py"},
}


def module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every ``metagmvae`` module a file imports anywhere in its body (``from a import b`` also
    yields ``a.b``, which is kept only where it is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] == "metagmvae" and module_file(n)}


def computing_code(entry_points: list[Path]) -> set[str]:
    """Repository-relative files of the modules reachable from ``entry_points`` through imports,
    not following (nor counting) the :data:`NOT_COMPUTING` helpers and package ``__init__`` files."""
    seen: set[str] = set()
    todo = list(entry_points)
    while todo:
        for name in imported_modules(todo.pop()):
            path = module_file(name)
            rel = path.relative_to(REPO).as_posix()
            if name in NOT_COMPUTING or rel in seen:
                continue
            seen.add(rel)
            todo.append(path)
    return {rel for rel in seen if not rel.endswith("__init__.py")}


STAGES = expanded_stages(yaml.safe_load((REPO / "params.yaml").read_text()))


def test_every_foreach_item_expanded():
    assert {"metatrain@omniglot_5way", "related@sib_mini_imagenet", "download@mini_imagenet"} <= set(STAGES)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_lists_the_code_it_runs(name):
    stage = STAGES[name]
    script = REPO / stage["cmd"].split()[1]
    entry_points = [script]
    if name.startswith("related@"):  # the method module is imported by name from the params section
        method = yaml.safe_load((REPO / "params.yaml").read_text())["related"][name.split("@")[1]]["method"]
        entry_points.append(REPO / "metagmvae" / "methods" / f"{method}.py")
    deps = stage["deps"]
    listed = {d for d in deps if (REPO / d).is_file()}
    folders = [d.rstrip("/") + "/" for d in deps if (REPO / d).is_dir()]

    datasets = {ds for ds in DATASET_CODE if any(d.startswith(f"data/{ds}/") for d in deps)}
    other_datasets_code = set().union(*(DATASET_CODE[ds] for ds in DATASET_CODE if ds not in datasets))
    missing = sorted(
        path
        for path in computing_code(entry_points)
        if path not in listed and not path.startswith(tuple(folders)) and path not in other_datasets_code
    )
    assert not missing, f"{name}: dvc.yaml deps lack {missing}"
    assert script.relative_to(REPO).as_posix() in listed
    code = [d for d in deps if d.startswith(("metagmvae/", "stages/"))]
    assert all((REPO / d).exists() for d in code), f"{name}: listed code that does not exist"
