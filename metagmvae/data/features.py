"""The feature store: SimCLR features of every split in one HDF5 file, read lazily.

Layout (format ``metagmvae.features.v1``), per split ``<s>``: ``features`` float32
``[classes, n, d]`` chunked one class per chunk (an episode touches ``way`` chunks),
``label`` int64 ``[classes, n]``, ``class_names`` ``[classes]`` and ``filenames``
``[classes * n]``, and the split's per-feature statistics as attributes ``mean`` and ``std``
(float64 ``[d]``, over all its items, population std). Root attributes name the encoder
checkpoint (``encoder_sha256``) that produced it and its pre-training budget
(``encoder_budget``, JSON). Written deterministically: the same encoder and images give the
same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metagmvae.data import hdf5
from metagmvae.data.episodes import EpisodeSet

FORMAT = "metagmvae.features.v1"


def write_features(path: Path, splits: dict[str, tuple[np.ndarray, list[str], list[list[str]]]], attrs: dict) -> None:
    """``splits``: ``{split: (features [C, n, d] float32, class names [C], file names [C][n])}``."""
    with hdf5.create(path, FORMAT, attrs) as f:
        for split, (features, classes, filenames) in splits.items():
            g = f.create_group(split)
            c, n, d = features.shape
            flat = features.reshape(c * n, d).astype(np.float64)
            g.attrs["mean"], g.attrs["std"] = flat.mean(0), flat.std(0)
            g.create_dataset("features", data=features.astype(np.float32), chunks=(1, n, d), track_times=False)
            hdf5.write_array(g, "label", np.repeat(np.arange(c), n).reshape(c, n))
            hdf5.write_strings(g, "class_names", classes)
            hdf5.write_strings(g, "filenames", [name for names in filenames for name in names])


class FeatureStore:
    """Read-only access to a feature file that never loads more than it is asked for."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = hdf5.open_store(self.path, FORMAT)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _features(self, split: str):
        if split not in self._file:
            raise hdf5.StoreError(f"{self.path}: has no split {split!r} (found {sorted(self._file)})")
        return self._file[split]["features"]

    def shape(self, split: str) -> tuple[int, int, int]:
        """``(classes, instances per class, feature size)`` from metadata only."""
        return tuple(self._features(split).shape)

    def statistics(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The split's per-feature ``(mean, std)``, float64 ``[d]``, stored when it was written."""
        attrs = self._file[split].attrs if split in self._file else None
        if attrs is None or "mean" not in attrs:
            raise hdf5.StoreError(f"{self.path}: split {split!r} has no stored feature statistics")
        return np.asarray(attrs["mean"]), np.asarray(attrs["std"])

    def summary(self, split: str) -> dict[str, float]:
        """A few numbers that say what the features look like (for the report): the mean and the
        median per-feature std, the fraction of exact zeros (ReLU features) and the features that
        never vary."""
        mean, std = self.statistics(split)
        zeros = float(np.mean(self.load(split) == 0))
        return {
            "mean": round(float(mean.mean()), 4),
            "median_feature_std": round(float(np.median(std)), 4),
            "zero_fraction": round(zeros, 4),
            "constant_features": int((std == 0).sum()),
            "features": int(len(mean)),
        }

    def load(self, split: str) -> np.ndarray:
        """Every feature of a split, ``[C, n, d]`` float32 (for training and full evaluation)."""
        return self._features(split)[()]

    def class_rows(self, split: str, classes: np.ndarray) -> dict[int, np.ndarray]:
        """The ``[n, d]`` features of each distinct class in ``classes`` (one chunk read each)."""
        data = self._features(split)
        return {int(c): data[int(c)] for c in np.unique(classes)}

    def gather(self, split: str, episodes: EpisodeSet) -> tuple[torch.Tensor, ...]:
        """Episodes read straight from the file, the same as
        :func:`metagmvae.data.episodes.gather` on the loaded split: ``(support [E, W*s, d],
        support_labels, query [E, W*Q, d], query_labels)``."""
        from metagmvae.data.episodes import gather

        rows = self.class_rows(split, episodes.classes)
        remap = {c: i for i, c in enumerate(rows)}
        compact = torch.from_numpy(np.stack(list(rows.values())))  # [distinct classes, n, d]
        local = np.vectorize(remap.__getitem__)(episodes.classes)
        return gather(compact, EpisodeSet(local, episodes.instances, episodes.shot, episodes.query))
