"""Atomic, deterministic file output and content digests.

Every file the pipeline writes goes through :func:`atomic_path` (folders through
:func:`atomic_dir`): the data is written to a temporary name in the destination folder and
renamed over the target only when writing succeeded, so a crash leaves either the previous
complete file or nothing. Temporary names carry the host and process id of their writer; the
next write of the same target removes those whose process is gone (a SIGKILL gives no chance
to clean up), so killed runs do not pile up half-written files.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DVC_TEMP_MARKER = (".dvc", "tmp", "exps")


def _host_prefix(target: Path) -> str:
    """``.<name>.<host>-``: the start of every temporary name of ``target`` written on this host."""
    return f".{target.name}.{socket.gethostname()}-"


def _temp_prefix(target: Path) -> str:
    """``.<name>.<host>-<pid>.``: whose temporary file this is."""
    return f"{_host_prefix(target)}{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove temporary files or folders of ``target`` left by dead writers on this host.

    Returns what was removed. Temporaries of live processes (a concurrent writer) and of other
    hosts (a shared filesystem) are left alone.
    """
    removed = []
    ours = _host_prefix(target)
    for path in target.parent.glob(glob.escape(ours) + "*.tmp"):
        pid = path.name[len(ours) :].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _make_parents(target: Path) -> list[Path]:
    """Create ``target``'s missing parent folders; return those created, deepest first."""
    created = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders :func:`_make_parents` created, deepest first, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    If the body raises, the temporary file and the parent folders made for it are removed, so no
    partial output survives.
    """
    target = Path(target)
    created = _make_parents(target)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.chmod(tmp_path, _permissions(0o666))
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        _remove_empty(created)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; it replaces ``target`` on success. If the body
    raises, the temporary folder and the parent folders made for it are removed."""
    target = Path(target)
    created = _make_parents(target)
    remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, _permissions(0o777))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def _permissions(mode: int) -> int:
    """``mode`` under the process umask (temporary files are created private)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def with_extension(prefix: Path, extension: str) -> Path:
    """``prefix`` with ``extension`` appended to its name (``runs/t0.2`` -> ``runs/t0.2.json``);
    ``Path.with_suffix`` would replace the ``.2`` of a run name instead."""
    return prefix.parent / f"{prefix.name}{extension}"


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at ``path``."""
    return json.loads(Path(path).read_text())


def write_json(path: str | os.PathLike, obj: Any, *, compact: bool = False) -> None:
    """Write ``obj`` as key-sorted JSON, atomically (stable bytes for DVC): indented, or on one
    line without spaces when ``compact`` (long lists of numbers)."""
    layout = {"separators": (",", ":")} if compact else {"indent": 2}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, sort_keys=True, **layout) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | os.PathLike, header: list[str], rows: list[list[Any]]) -> None:
    """Write a CSV table atomically; ``None`` cells are left empty, floats get 4 decimals."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = [",".join(header)] + [",".join(cell(v) for v in row) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root, seen through a ``dvc exp run --temp`` copy if we are in one."""
    path = Path(start or os.getcwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - len(DVC_TEMP_MARKER) + 1):
        if parts[i : i + len(DVC_TEMP_MARKER)] == DVC_TEMP_MARKER:
            return Path(*parts[:i])
    return path
