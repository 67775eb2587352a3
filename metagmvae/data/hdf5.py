"""Deterministic HDF5 writing and checked reading.

Files are written through :func:`metagmvae.runtime.io.atomic_path`, with object timestamps off and a
fixed library-version range, so identical inputs give byte-identical files (stable DVC hashes).
Every file carries a ``format`` attribute that readers check, so a truncated or foreign file is
reported by name instead of failing somewhere downstream.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from metagmvae.runtime.io import atomic_path


class StoreError(ValueError):
    """An HDF5 store is missing, truncated, or not the kind of file expected."""


@contextlib.contextmanager
def create(path: str | os.PathLike, fmt: str, attrs: dict[str, Any] | None = None) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing at a temporary name; rename it onto ``path`` on success.

    ``fmt`` names the file kind (checked by :func:`open_store`); ``attrs`` are root attributes.
    """
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w", libver=("v110", "v110"), track_order=True) as f:
        f.attrs["format"] = fmt
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        yield f


def write_array(group: h5py.Group, name: str, data: np.ndarray, chunks: tuple[int, ...] | None = None) -> None:
    """Write one dataset without timestamps; gzip + shuffle when ``chunks`` is given."""
    data = np.asarray(data)
    kwargs: dict[str, Any] = {"track_times": False}
    if chunks is not None:
        kwargs.update(chunks=chunks, compression="gzip", compression_opts=4, shuffle=True)
    group.create_dataset(name, data=data, **kwargs)


def write_strings(group: h5py.Group, name: str, values: list[str]) -> None:
    """Write a list of UTF-8 strings as a variable-length string dataset."""
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype(), track_times=False)


def read_strings(dataset: h5py.Dataset) -> list[str]:
    """Inverse of :func:`write_strings`."""
    return [s.decode() if isinstance(s, bytes) else s for s in dataset[()]]


def open_store(path: str | os.PathLike, fmt: str) -> h5py.File:
    """Open an HDF5 file read-only and check its ``format`` attribute.

    Raises :class:`StoreError` naming the file when it is missing, unreadable (e.g. truncated)
    or of another kind.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: file not found (run the stage that produces it)")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: not a readable HDF5 file, truncated or corrupt ({exc})") from exc
    found = f.attrs.get("format")
    if found != fmt:
        f.close()
        raise StoreError(f"{path}: expected an HDF5 file of format {fmt!r}, found {found!r}")
    return f
