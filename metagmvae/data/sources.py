"""Fetch a file from an ordered list of sources (URLs or local folders) and verify it.

The first source whose copy passes verification wins. Nothing is written at the destination
unless a verified copy exists; the error lists every source tried and why it failed.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from metagmvae.runtime.io import atomic_path

URL_SCHEMES = ("http://", "https://", "file://")


class SourceError(RuntimeError):
    """No source provided a valid copy of a file."""


def resolve_source(source: str, root: Path) -> str:
    """URLs stay as they are; relative folders are taken relative to ``root``."""
    if source.startswith(URL_SCHEMES):
        return source.rstrip("/")
    path = Path(os.path.expanduser(source))
    return str(path if path.is_absolute() else (root / path).resolve())


def copy_from(source: str, name: str, dest: Path, timeout: float) -> None:
    """Copy ``<source>/<name>`` (a URL or a resolved folder) to ``dest``."""
    if source.startswith(URL_SCHEMES):
        with urllib.request.urlopen(f"{source}/{name}", timeout=timeout) as response, open(dest, "wb") as f:
            shutil.copyfileobj(response, f)
    else:
        src = Path(source) / name
        if not src.is_file():
            raise FileNotFoundError("does not exist")
        shutil.copyfile(src, dest)


def fetch_verified(
    name: str,
    sources: list[str],
    dest: Path,
    verify: Callable[[Path, str], object],
    root: Path,
    timeout: float = 60.0,
) -> tuple[str, object]:
    """Copy ``name`` from the first source that yields a copy passing ``verify`` to ``dest``.

    ``verify(path, label)`` must raise on a bad copy, naming it as ``label`` (the source file,
    ``<source>/<name>``, not the temporary copy at ``path``). Returns ``(source used, what
    verify returned)``. Raises :class:`SourceError` listing every source and its failure.
    """
    if not sources:
        raise SourceError(f"{name}: no sources configured")
    failures = []
    for source in sources:
        resolved = resolve_source(source, root)
        label = f"{resolved}/{name}"
        try:
            with atomic_path(dest) as tmp:
                copy_from(resolved, name, tmp, timeout)
                result = verify(tmp, label)
            return resolved, result
        except ValueError as exc:  # the copy arrived but is not the expected file; verify named it
            failures.append(f"  {exc}")
        except (OSError, urllib.error.URLError) as exc:
            failures.append(f"  {label}: {exc}")
    raise SourceError(f"{name}: no source gave a valid copy:\n" + "\n".join(failures))
