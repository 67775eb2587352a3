"""The package's folders are layers and every import points down (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "metagmvae"
LAYERS = (  # lowest first: a module may import its own layer and the ones above it in this list
    {"runtime", "schema"},
    {"data", "models"},
    {"training", "evaluation"},
    {"methods"},
    {"analysis"},
    {"pipeline", "cli"},
)


def layer_of(folder: str) -> int:
    return next(i for i, folders in enumerate(LAYERS) if folder in folders)


def imported_folders(tree: ast.Module) -> set[tuple[str, int]]:
    """``(folder, line)`` of every ``metagmvae.<folder>`` a module imports (module level or not)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "metagmvae":
                names = [alias.name for alias in node.names]
            elif node.module.startswith("metagmvae."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("metagmvae.")]
        found |= {(name, node.lineno) for name in names}
    return found


def test_every_module_sits_in_a_layer_folder():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set().union(*LAYERS)


def test_imports_point_down_the_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        folder = path.relative_to(PACKAGE).parts[0]
        if folder == "__init__.py":
            continue
        for imported, line in imported_folders(ast.parse(path.read_text())):
            if layer_of(imported) > layer_of(folder):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports metagmvae.{imported}")
    assert upward == []


def test_the_package_never_imports_the_studies():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in modules if m.split(".")[0] in ("benchmarks", "scripts")}, path


def test_validating_the_parameter_file_imports_no_torch():
    """The schema is light: `metagmvae validate` answers without loading torch (or numpy)."""
    code = (
        "import sys; from metagmvae.cli import validate; status = validate.main(['params.yaml']); "
        "heavy = sorted({'torch', 'numpy', 'h5py'} & set(sys.modules)); print(status, heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr


def test_the_schema_names_exactly_what_the_code_provides():
    """The choices a schema offers are the ones the implementation has (each is written once, in
    the schema; these are the places that must follow it)."""
    from metagmvae.data import omniglot
    from metagmvae.data.stores import STORES
    from metagmvae.methods.baselines import BASELINES
    from metagmvae.methods.registry import METHODS
    from metagmvae.schema import data, evaluate, related

    assert tuple(STORES) == data.DATASETS
    assert tuple(BASELINES) == evaluate.BASELINES
    assert tuple(omniglot.RESIZE_FILTERS) == data.RESIZE_FILTERS
    assert {name: method.Config for name, method in METHODS.items()} == related.METHOD_CONFIGS
