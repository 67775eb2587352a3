"""Stage scripts as real processes in a throw-away project folder: start, wait, kill, compare."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from conftest import REPO, expanded_stages


def make_project(root: Path, params: dict, files: dict[str, Path]) -> Path:
    """A folder laid out like the repository: ``params.yaml`` and ``files`` (relative path ->
    source file) copied in; stage scripts run with it as the working directory."""
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for rel, src in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(Path(src).read_bytes())
    return root


def stage_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), METAGMVAE_TRACKING="off", OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    env.update(extra)
    return env


def stage_command(project: Path, stage: str) -> list[str]:
    """The command dvc.yaml runs for ``stage`` (e.g. ``metatrain@omniglot_5way``) with the
    project's parameters, its script taken from the repository."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    _, script, *args = shlex.split(expanded_stages(params)[stage]["cmd"])
    return [sys.executable, str(REPO / script), *args]


def start_stage(project: Path, stage: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The dvc.yaml command of ``stage`` running in ``project``."""
    return subprocess.Popen(
        stage_command(project, stage),
        cwd=project,
        env=env or stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for ``proc``; its output, after asserting it succeeded."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (polled every 5 ms); fails if it never does
    or if the process ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the process ended before the kill point:\n{proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
