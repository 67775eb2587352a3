"""Where each dataset's class-structured store lives and how to read one split of it.

A store holds, per split, items of shape ``[classes, instances, *item]``: Omniglot images
``[C, 20, 1, 28, 28]`` in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metagmvae.config import ConfigError
from metagmvae.data import hdf5, omniglot

STORES = {"omniglot": (Path("data/omniglot/omniglot.h5"), omniglot.FORMAT)}


def _store(dataset: str) -> tuple[Path, str]:
    if dataset not in STORES:
        raise ConfigError(f"dataset = {dataset!r}: unknown; expected one of {sorted(STORES)}")
    return STORES[dataset]


def store_path(dataset: str) -> Path:
    """Path of the dataset's store, relative to the repository root."""
    return _store(dataset)[0]


def split_shape(dataset: str, split: str, path: Path | None = None) -> tuple[int, int]:
    """``(classes, instances per class)`` of one split, read from the file's metadata only."""
    default, fmt = _store(dataset)
    path = path or default
    with hdf5.open_store(path, fmt) as f:
        if split not in f:
            raise hdf5.StoreError(f"{path}: has no split {split!r} (found {sorted(f)})")
        shape = f[split]["images"].shape
    return int(shape[0]), int(shape[1])


def load_split(dataset: str, split: str, path: Path | None = None) -> np.ndarray:
    """All items of one split, float32 ``[classes, instances, *item]``."""
    default, _ = _store(dataset)
    return omniglot.load_split(path or default, split)
