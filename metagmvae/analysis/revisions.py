"""Files as they were at a git revision, a DVC experiment, or in the working tree.

A revision is anything ``git rev-parse`` accepts (``HEAD~1``, ``main``, a commit) or the name of
a DVC experiment (``dvc exp show``'s names; an experiment is a commit under
``refs/exps/<baseline>/<name>``), or ``workspace`` for the files on disk, as in
``dvc metrics diff``. Metrics-like outputs (``cache: false``) are committed to git with their
experiment, so ``git show <revision>:<path>`` reads them without the DVC cache.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

WORKSPACE = "workspace"


@dataclass(frozen=True)
class Revision:
    """A revision as named by the user and the commit it resolved to (``None``: the working tree)."""

    name: str
    commit: str | None

    @property
    def label(self) -> str:
        """``HEAD~1 (1a2b3c4)``, or ``workspace``."""
        return self.name if self.commit is None else f"{self.name} ({self.commit[:7]})"


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    except OSError as exc:
        raise ValueError(f"git is not available: {exc}") from exc


def resolve(name: str, repo: Path) -> Revision:
    """``name`` as a git revision, else as a DVC experiment name; ``workspace`` is the working tree.

    Raises ``ValueError`` naming ``name`` when it is neither, or names experiments of several
    baselines.
    """
    if name == WORKSPACE:
        return Revision(name, None)
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    if found.returncode == 0:
        return Revision(name, found.stdout.strip())
    refs = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps/")
    if refs.returncode != 0:
        raise ValueError(f"{name!r}: not a git revision ({repo} is not a git repository)")
    matches = [line.split() for line in refs.stdout.splitlines() if line.split()[0].rsplit("/", 1)[-1] == name]
    if not matches:
        raise ValueError(f"{name!r}: neither a git revision nor a DVC experiment name (refs/exps/*/{name})")
    if len(matches) > 1:
        raise ValueError(f"{name!r}: names experiments of several baselines ({[ref for ref, _ in matches]}); use one")
    return Revision(name, matches[0][1])


def list_files(revision: Revision, repo: Path, folder: str) -> list[str]:
    """Paths (relative to ``repo``, ``/``-separated, sorted) of every file under ``folder``."""
    if revision.commit is None:
        root = repo / folder
        return sorted(p.relative_to(repo).as_posix() for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    listed = _git(repo, "ls-tree", "-r", "--name-only", revision.commit, "--", folder)
    if listed.returncode != 0:
        raise ValueError(f"{revision.label}: cannot list {folder}: {listed.stderr.strip()}")
    return sorted(listed.stdout.splitlines())


def read_text(revision: Revision, repo: Path, path: str) -> str | None:
    """The text of ``path`` (relative to ``repo``) at ``revision``; ``None`` when it has no such file."""
    if revision.commit is None:
        file = repo / path
        return file.read_text() if file.is_file() else None
    shown = _git(repo, "show", f"{revision.commit}:./{path}")
    return shown.stdout if shown.returncode == 0 else None
