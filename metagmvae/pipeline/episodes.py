"""The `episodes` stage: the fixed validation and test episodes of one dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metagmvae.config import Checker, ConfigError, non_negative, positive, positive_ints, section
from metagmvae.data.episodes import (
    EpisodeSet,
    check_episode_shape,
    episode_rng,
    sample_episodes,
    write_episodes,
)
from metagmvae.data.stores import split_shape


@dataclass(frozen=True)
class EpisodesConfig:
    """The ``episodes.<dataset>`` section."""

    seed: int
    query: int  # queries per class
    splits: dict[str, tuple[int, list[int], list[int]]]  # val / test -> (episodes, ways, shots)


def episodes_config(params: dict, dataset: str) -> EpisodesConfig:
    """Parse and validate ``episodes.<dataset>`` (the data-dependent limits are checked by :func:`run`)."""
    check = Checker(section(params, "episodes", dataset), f"episodes.{dataset}")
    seed = check.get("seed", int, non_negative)
    query = check.get("query", int, positive)
    splits = {}
    for split in ("val", "test"):
        sub = Checker(check.get(split, dict), f"episodes.{dataset}.{split}")
        splits[split] = (
            sub.get("episodes", int, positive),
            sub.get("ways", list, positive_ints),
            sub.get("shots", list, positive_ints),
        )
        sub.done()
    check.done()
    return EpisodesConfig(seed, query, splits)


def check_settings(dataset: str, cfg: EpisodesConfig, split_shapes: dict[str, tuple[int, int]]) -> None:
    """Refuse a way or shot + query that ``split_shapes`` (split -> (classes, instances per
    class)) cannot supply, naming the section and the setting."""
    for split, (_, ways, shots) in cfg.splits.items():
        for way in ways:
            for shot in shots:
                try:
                    check_episode_shape(*split_shapes[split], way, shot, cfg.query)
                except ValueError as exc:
                    raise ConfigError(f"episodes.{dataset}.{split} ({way}-way {shot}-shot): {exc}") from exc


def run(dataset: str, params: dict, store: Path, out_path: Path) -> dict[tuple[str, int, int], EpisodeSet]:
    """Validate ``episodes.<dataset>`` against ``store`` and write the fixed validation and test
    episodes.

    Every (split, way, shot) gets its own seeded stream, so adding a setting never changes the
    episodes of another.
    """
    cfg = episodes_config(params, dataset)
    shapes = {split: split_shape(dataset, split, store) for split in cfg.splits}
    check_settings(dataset, cfg, shapes)
    sets = {}
    for split, (n, ways, shots) in cfg.splits.items():
        for way in ways:
            for shot in shots:
                rng = episode_rng(cfg.seed, split, way, shot)
                sets[(split, way, shot)] = sample_episodes(rng, n, *shapes[split], way, shot, cfg.query)
    write_episodes(out_path, sets, {"dataset": dataset, "seed": cfg.seed, "query": cfg.query})
    return sets
