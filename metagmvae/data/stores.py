"""How to read one split of each dataset's class-structured store (its path is an output of
dvc.yaml, passed in).

A store holds, per split, items of shape ``[classes, instances, *item]``: Omniglot images
``[C, 20, 1, 28, 28]`` in [0, 1], or Mini-ImageNet SimCLR features ``[C, 600, 256]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metagmvae.data import features, hdf5, omniglot
from metagmvae.runtime.config import ConfigError


def _load_features(path: Path, split: str) -> np.ndarray:
    with features.FeatureStore(path) as store:
        return store.load(split)


@dataclass(frozen=True)
class StoreSpec:
    format: str
    items: str  # the per-split dataset holding [classes, instances, ...]
    loader: Callable[[Path, str], np.ndarray]
    images: bool  # items are images (models on them are convolutional), not feature vectors


STORES = {
    "omniglot": StoreSpec(omniglot.FORMAT, "images", omniglot.load_split, images=True),
    "mini_imagenet": StoreSpec(features.FORMAT, "features", _load_features, images=False),
}


def _spec(dataset: str) -> StoreSpec:
    if dataset not in STORES:
        raise ConfigError(f"dataset = {dataset!r}: unknown; expected one of {sorted(STORES)}")
    return STORES[dataset]


def split_shape(dataset: str, split: str, path: Path) -> tuple[int, int]:
    """``(classes, instances per class)`` of one split of the store ``path``, read from the file's
    metadata only."""
    spec = _spec(dataset)
    with hdf5.open_store(path, spec.format) as f:
        if split not in f:
            raise hdf5.StoreError(f"{path}: has no split {split!r} (found {sorted(f)})")
        shape = f[split][spec.items].shape
    return int(shape[0]), int(shape[1])


def split_statistics(dataset: str, split: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature ``(mean, std)`` (float64, population std) of a split's flattened items: stored
    in a feature store (what its readers standardise with), computed for a pixel store."""
    spec = _spec(dataset)
    if spec.images:
        items = spec.loader(path, split)
        flat = items.reshape(items.shape[0] * items.shape[1], -1).astype(np.float64)
        return flat.mean(0), flat.std(0)
    with features.FeatureStore(path) as store:
        return store.statistics(split)


def load_split(dataset: str, split: str, path: Path) -> np.ndarray:
    """All items of one split of the store ``path``, float32 ``[classes, instances, *item]``."""
    return _spec(dataset).loader(path, split)
