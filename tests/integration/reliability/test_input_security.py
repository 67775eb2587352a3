"""Item 6: archives with absolute, ``..`` or symlinked members are refused; source folders
cannot point outside themselves; checkpoints never run pickled code."""

from __future__ import annotations

import ast
import copy
import os
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO, tiny_members, write_mini_folder, write_mini_packed, write_zip

from metagmvae.data import mini_imagenet, omniglot
from metagmvae.data.sources import SourceError
from metagmvae.pipeline import download
from metagmvae.runtime import checkpoint
from metagmvae.runtime.io import sha256_file
from metagmvae.schema.params import parse_section

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
PNG = tiny_members("images_background.zip", 1)[0][1]


@pytest.mark.parametrize(
    "member",
    ["/etc/cron.d/evil.png", "images_background/../../evil.png", "images_background\\..\\evil.png"],
)
def test_unsafe_member_names_are_refused(tmp_path, member):
    archive = write_zip(tmp_path / "images_background.zip", [(member, PNG)])
    with pytest.raises(omniglot.ArchiveError, match=r"images_background.zip: unsafe member name"):
        omniglot.verify_archive(archive)


def test_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "images_background.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("images_background/Alphabet/character01/0001_01.png")
        info.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(omniglot.ArchiveError, match="is a symbolic link"):
        omniglot.verify_archive(archive)


def test_download_stage_refuses_a_zip_slip_archive_and_writes_nothing(tmp_path):
    source = tmp_path / "mirror"
    source.mkdir()
    write_zip(source / "images_background.zip", [("images_background/../../../evil.png", PNG)])
    params = copy.deepcopy(PARAMS)
    params["download"]["omniglot"]["sources"] = [str(source)]
    work = tmp_path / "work"
    with pytest.raises(SourceError, match=r"unsafe member name 'images_background/../../../evil.png'"):
        download.run(parse_section(params, "download", "omniglot"), work / "raw", tmp_path)
    assert not work.exists() and not (tmp_path / "evil.png").exists()  # not even the folders made for it


def test_source_folders_cannot_name_files_outside_themselves(tmp_path):
    rows = {s: [(f"{s}{i}.jpg", f"n{s}", b"\xff\xd8jpeg") for i in range(2)] for s in ("train", "val", "test")}
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8secret")
    # the folder form: a split CSV naming ../../secret.jpg
    folder = write_mini_folder(tmp_path / "folder", rows)
    (folder / "train.csv").write_text("filename,label\n../../secret.jpg,ntrain\n")
    with pytest.raises(mini_imagenet.SourceDataError, match=r"train.csv: refusing the path '../../secret.jpg'"):
        mini_imagenet.read_source(folder)
    # the packed form: SHA256SUMS listing a file outside the folder
    packed = write_mini_packed(tmp_path / "packed", rows)
    with open(packed / "SHA256SUMS", "a") as f:
        f.write(f"{sha256_file(tmp_path / 'secret.jpg')}  ../secret.jpg\n")
    with pytest.raises(mini_imagenet.SourceDataError, match=r"SHA256SUMS: refusing the path '../secret.jpg'"):
        mini_imagenet.read_source(packed)
    # ... or index.csv reading a shard that SHA256SUMS does not vouch for (checksums made to match)
    packed = write_mini_packed(tmp_path / "packed2", rows)
    index = (packed / "index.csv").read_text().replace("train-0.bin", "../secret.jpg", 1)
    (packed / "index.csv").write_text(index)
    sums = [line for line in (packed / "SHA256SUMS").read_text().splitlines() if not line.endswith("index.csv")]
    (packed / "SHA256SUMS").write_text("\n".join([*sums, f"{sha256_file(packed / 'index.csv')}  index.csv"]) + "\n")
    with pytest.raises(mini_imagenet.SourceDataError, match=r"shard '../secret.jpg' is not listed in SHA256SUMS"):
        mini_imagenet.read_source(packed)


class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path):
    import torch

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "model": Payload(marker)}, evil)
    with pytest.raises(checkpoint.CheckpointError, match=r"evil.pt: unreadable checkpoint"):
        checkpoint.load(evil)
    assert not marker.exists()


UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "marshal", "shelve"}  # every reader of theirs runs code
UNSAFE_CALLS = {
    "eval": "evaluates a string",
    "exec": "executes a string",
    "yaml.load": "constructs arbitrary objects (use yaml.safe_load)",
    "yaml.load_all": "constructs arbitrary objects (use yaml.safe_load_all)",
    "yaml.full_load": "constructs arbitrary objects (use yaml.safe_load)",
    "yaml.full_load_all": "constructs arbitrary objects (use yaml.safe_load_all)",
    "yaml.unsafe_load": "constructs arbitrary objects (use yaml.safe_load)",
    "yaml.unsafe_load_all": "constructs arbitrary objects (use yaml.safe_load_all)",
}
SKIPPED_FOLDERS = {"mutants", "__pycache__"}  # and every hidden folder (.venv, .git, .dvc, caches)


def qualified_name(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """``np.load`` -> ``numpy.load`` (through the file's imports), ``eval`` -> ``eval``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([aliases.get(node.id, node.id), *reversed(parts)])


def keyword_constant(call: ast.Call, key: str):
    """The constant passed as keyword ``key`` (``None`` when absent; ``...`` when not a constant)."""
    for keyword in call.keywords:
        if keyword.arg == key:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else ...
    return None


def unsafe_calls(source: str) -> list[tuple[int, str]]:
    """``(line, reason)`` of every call in ``source`` that can run code from data: the pickle-like
    modules, eval/exec, YAML's object-constructing loaders, ``torch.load`` without
    ``weights_only=True``, ``numpy.load(allow_pickle=...)`` and ``shell=True``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
                if alias.name.split(".")[0] in UNSAFE_MODULES:
                    found.append((node.lineno, f"imports {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in UNSAFE_MODULES:
                found.append((node.lineno, f"imports from {node.module}"))
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = qualified_name(node.func, aliases)
        if name in UNSAFE_CALLS:
            found.append((node.lineno, f"{name}: {UNSAFE_CALLS[name]}"))
        if name == "torch.load" and keyword_constant(node, "weights_only") is not True:
            found.append((node.lineno, "torch.load without weights_only=True unpickles arbitrary objects"))
        if name == "numpy.load" and keyword_constant(node, "allow_pickle") not in (None, False):
            found.append((node.lineno, "numpy.load with allow_pickle unpickles object arrays"))
        if keyword_constant(node, "shell") not in (None, False):
            found.append((node.lineno, "shell=True runs a string through the shell"))
    return sorted(found)


def python_files(root: Path) -> list[Path]:
    """Every ``.py`` file of the checkout (hidden folders and mutmut's copies skipped)."""
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in SKIPPED_FOLDERS)
        files += [Path(folder) / n for n in sorted(names) if n.endswith(".py")]
    return files


def test_the_scan_sees_every_unsafe_call():
    unsafe = {
        "import pickle\nstate = pickle.load(f)": "imports pickle",
        "from pickle import Unpickler\nUnpickler(f).load()": "imports from pickle",
        "import marshal as m\nm.loads(b)": "imports marshal",
        "import yaml\nyaml.full_load(text)": "yaml.full_load",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)": "yaml.load",
        "from yaml import unsafe_load\nunsafe_load(text)": "yaml.unsafe_load",
        "import torch\ntorch.load(path)": "torch.load without weights_only=True",
        "import torch as t\nt.load(path, weights_only=False)": "torch.load without weights_only=True",
        "from torch import load\nload(path, map_location='cpu')": "torch.load without weights_only=True",
        "import numpy as np\nnp.load(path, allow_pickle=True)": "numpy.load with allow_pickle",
        "eval(text)": "eval",
        "exec(code)": "exec",
        "import subprocess\nsubprocess.run(cmd, shell=True)": "shell=True",
    }
    for source, reason in unsafe.items():
        found = unsafe_calls(source)
        assert len(found) == 1 and reason in found[0][1], (source, found)
    safe = [
        "import torch\ntorch.load(path, map_location='cpu', weights_only=True)",
        "import yaml\nyaml.safe_load(text)",
        "import numpy as np\nnp.load(path)\nnp.load(path, allow_pickle=False)",
        "model.eval()\nself.exec_count = 1",
        "import subprocess\nsubprocess.run(cmd, shell=False)",
    ]
    for source in safe:
        assert unsafe_calls(source) == [], source


def test_no_python_file_in_the_repository_unpickles_or_evaluates_data():
    """The package, the stage scripts, the scripts and the tests never call the loaders that run
    code from a file (the test files included: one of them builds a pickle payload through
    torch.save, never a reader)."""
    files = python_files(REPO)
    folders = {p.relative_to(REPO).parts[0] for p in files}
    assert {"metagmvae", "stages", "scripts", "tests"} <= folders, folders
    assert len(files) > 90
    for path in files:
        for line, reason in unsafe_calls(path.read_text()):
            pytest.fail(f"{path.relative_to(REPO)}:{line}: {reason}")
