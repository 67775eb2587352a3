"""MLflow tracking: one run per training or evaluation, tagged with the git commit and stage.

The store defaults to a SQLite file at the repository root (``mlflow.db``, artifacts in
``mlartifacts/``), resolved to an absolute path, so runs started from a ``dvc exp run --temp``
copy under ``.dvc/tmp/exps`` land in the same store. ``MLFLOW_TRACKING_URI`` overrides it.
``METAGMVAE_TRACKING=off`` disables tracking, and without MLflow installed (e.g. a bare GPU
box) every call is a no-op, so stage scripts always run as plain Python.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metagmvae.runtime.config import flatten
from metagmvae.runtime.io import project_root

if TYPE_CHECKING:
    from metagmvae.runtime.device import Runtime

EXPERIMENT = "meta-gmvae"

log = logging.getLogger(__name__)


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<abs root>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """``HEAD`` commit, with ``-dirty`` when tracked files differ; ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


class Run:
    """A thin wrapper over an active MLflow run (or nothing, when tracking is off)."""

    def __init__(self, mlflow_module=None):
        self._mlflow = mlflow_module

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._mlflow:
            flat = {k: str(v)[:6000] for k, v in flatten(params).items()}
            self._mlflow.log_params(flat)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._mlflow:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | os.PathLike, folder: str | None = None) -> None:
        if self._mlflow and Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=folder)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._mlflow:
            self._mlflow.set_tags({k: str(v) for k, v in tags.items()})


def result_metrics(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
    """A metrics file's ``{method: {"<W>way_<s>shot": {"accuracy", "ci95", ...}}}`` as flat MLflow
    metrics ``{"<method>/<W>way_<s>shot/accuracy": %, ".../ci95": %}``."""
    return {
        f"{method}/{key}/{stat}": res[stat]
        for method, by_key in results.items()
        for key, res in by_key.items()
        for stat in ("accuracy", "ci95")
    }


def _load_mlflow():
    if os.environ.get("METAGMVAE_TRACKING", "on").lower() in ("off", "0", "false"):
        return None
    try:
        import mlflow
    except ImportError:
        log.warning("MLflow is not installed: this run is not tracked")
        return None
    return mlflow


def _store_lock(uri: str) -> contextlib.AbstractContextManager:
    """An inter-process lock beside a SQLite store (``<db>.lock``); nothing for a server, whose
    database serialises its clients itself."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{db}.lock", timeout=600)


@contextlib.contextmanager
def start_run(
    stage: str, run_name: str, params: Mapping[str, Any] | None = None, runtime: Runtime | None = None
) -> Iterator[Run]:
    """Open an MLflow run tagged with ``stage``, the git commit and the DVC experiment (if any).

    ``runtime``: the resolved runtime of the run, logged as params ``runtime.<key>`` and tags
    ``runtime.<key>`` (device, precision and channels-last as resolved and as requested).
    On an exception the run is marked FAILED and the exception propagates.
    """
    mlflow = _load_mlflow()
    if mlflow is None:
        yield Run(None)
        return
    root = project_root()
    uri = tracking_uri(root)
    with _store_lock(uri):  # two queue workers must not both create (migrate) a new SQLite store
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            artifacts = (root / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
        mlflow.set_experiment(EXPERIMENT)
    commit = git_commit()
    tags = {"stage": stage, "git_commit": commit, "mlflow.source.git.commit": commit}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    resolved = {f"runtime.{k}": v for k, v in (runtime.describe() if runtime else {}).items()}
    with mlflow.start_run(run_name=run_name, tags=tags | {k: str(v) for k, v in resolved.items()}):
        run = Run(mlflow)
        if params or resolved:
            run.log_params({**(params or {}), **resolved})
        yield run
