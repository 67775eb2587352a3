"""Few-shot episodes: fixed evaluation episodes (a file, not a seed) and training batches.

An episode picks ``way`` classes without replacement and, per class, ``shot + query`` distinct
instances; the first ``shot`` are support, the rest queries. Labels ``0..way-1`` follow the
order in which classes were drawn; support and query are class-major.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metagmvae.data import hdf5
from metagmvae.schema.data import check_episode_shape

FORMAT = "metagmvae.episodes.v1"
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class EpisodeSet:
    """Indices of ``n`` episodes of one (split, way, shot).

    classes: int64 ``[n, way]`` class indices into the split.
    instances: int64 ``[n, way, shot + query]`` instance indices within each class.
    """

    classes: np.ndarray
    instances: np.ndarray
    shot: int
    query: int

    @property
    def way(self) -> int:
        return self.classes.shape[1]

    def __len__(self) -> int:
        return self.classes.shape[0]

    def slice(self, start: int, stop: int) -> EpisodeSet:
        return EpisodeSet(self.classes[start:stop], self.instances[start:stop], self.shot, self.query)


def episode_rng(seed: int, split: str, way: int, shot: int) -> np.random.Generator:
    """Independent, reproducible stream per (seed, split, way, shot)."""
    return np.random.default_rng([seed, SPLIT_CODES[split], way, shot])


def sample_episodes(
    rng: np.random.Generator, n: int, n_classes: int, n_instances: int, way: int, shot: int, query: int
) -> EpisodeSet:
    """Draw ``n`` episodes (vectorised: argsort of uniform noise is a draw without replacement)."""
    check_episode_shape(n_classes, n_instances, way, shot, query)
    classes = np.argsort(rng.random((n, n_classes)), axis=1)[:, :way]
    instances = np.argsort(rng.random((n, way, n_instances)), axis=2)[:, :, : shot + query]
    return EpisodeSet(classes.astype(np.int64), instances.astype(np.int64), shot, query)


def episode_key(way: int, shot: int) -> str:
    """``(5, 1)`` -> ``"5way_1shot"``: the name of a setting in episode files and metrics."""
    return f"{way}way_{shot}shot"


def parse_episode_key(key: str) -> tuple[int, int]:
    """``"5way_1shot"`` -> ``(5, 1)``, the inverse of :func:`episode_key` (sorts by way, then shot)."""
    way, shot = key.removesuffix("shot").split("way_")
    return int(way), int(shot)


def write_episodes(path: str | os.PathLike, sets: dict[tuple[str, int, int], EpisodeSet], attrs: dict) -> None:
    """Write ``{(split, way, shot): EpisodeSet}`` to one HDF5 file, deterministically."""
    with hdf5.create(path, FORMAT, attrs) as f:
        for (split, way, shot), eps in sorted(sets.items()):
            g = f.require_group(split).create_group(episode_key(way, shot))
            g.attrs["query"] = eps.query
            g.attrs["shot"] = shot
            hdf5.write_array(g, "classes", eps.classes)
            hdf5.write_array(g, "instances", eps.instances)


def read_episodes(path: str | os.PathLike, split: str, way: int, shot: int) -> EpisodeSet:
    """Read one (split, way, shot) group written by :func:`write_episodes`."""
    with hdf5.open_store(path, FORMAT) as f:
        key = f"{split}/{episode_key(way, shot)}"
        if key not in f:
            available = [f"{s}/{k}" for s in f for k in f[s]]
            raise hdf5.StoreError(f"{Path(path)}: no episodes {key!r}; the file holds {available}")
        g = f[key]
        return EpisodeSet(g["classes"][()], g["instances"][()], int(g.attrs["shot"]), int(g.attrs["query"]))


def gather(data: torch.Tensor, episodes: EpisodeSet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Materialise episodes from class-structured data.

    data: ``[C, n, *item]`` (on any device). Returns ``(support [E, W*s, *item],
    support_labels [E, W*s], query [E, W*Q, *item], query_labels [E, W*Q])``, class-major.
    """
    cls = torch.as_tensor(episodes.classes, device=data.device)
    inst = torch.as_tensor(episodes.instances, device=data.device)
    x = data[cls.unsqueeze(-1), inst]  # [E, W, s+Q, *item]
    e, w, s = len(episodes), episodes.way, episodes.shot
    item = x.shape[3:]
    labels = torch.arange(w, device=data.device).view(1, w, 1)
    support = x[:, :, :s].reshape(e, w * s, *item)
    query = x[:, :, s:].reshape(e, w * episodes.query, *item)
    y_support = labels.expand(e, w, s).reshape(e, w * s)
    y_query = labels.expand(e, w, episodes.query).reshape(e, w * episodes.query)
    return support, y_support, query, y_query


def sample_training_batch(
    pool: torch.Tensor, batch: int, points: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Unlabeled training episodes: ``batch * points`` rows drawn uniformly **with replacement**
    from the flat pool ``[P, *item]`` (class structure ignored), as ``[batch, points, *item]``."""
    idx = torch.randint(pool.shape[0], (batch * points,), device=pool.device, generator=generator)
    return pool[idx].view(batch, points, *pool.shape[1:])
