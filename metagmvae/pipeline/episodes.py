"""The `episodes` stage: the fixed validation and test episodes of one dataset."""

from __future__ import annotations

from pathlib import Path

from metagmvae.data.episodes import (
    EpisodeSet,
    check_episode_shape,
    episode_rng,
    sample_episodes,
    write_episodes,
)
from metagmvae.data.stores import split_shape
from metagmvae.runtime.config import ConfigError, NonNegativeInt, PositiveInt, PositiveInts, Section


class EpisodeSettings(Section):
    """The episodes of one split: how many per setting, and every way x shot setting drawn."""

    episodes: PositiveInt
    ways: PositiveInts
    shots: PositiveInts


class EpisodesConfig(Section):
    """The ``episodes.<dataset>`` section (the data-dependent limits are checked by :func:`run`)."""

    seed: NonNegativeInt
    query: PositiveInt  # queries per class
    val: EpisodeSettings
    test: EpisodeSettings

    @property
    def splits(self) -> dict[str, EpisodeSettings]:
        return {"val": self.val, "test": self.test}


def check_settings(dataset: str, cfg: EpisodesConfig, split_shapes: dict[str, tuple[int, int]]) -> None:
    """Refuse a way or shot + query that ``split_shapes`` (split -> (classes, instances per
    class)) cannot supply, naming the section and the setting."""
    for split, settings in cfg.splits.items():
        for way in settings.ways:
            for shot in settings.shots:
                try:
                    check_episode_shape(*split_shapes[split], way, shot, cfg.query)
                except ValueError as exc:
                    raise ConfigError(f"episodes.{dataset}.{split} ({way}-way {shot}-shot): {exc}") from exc


def run(dataset: str, cfg: EpisodesConfig, store: Path, out_path: Path) -> dict[tuple[str, int, int], EpisodeSet]:
    """Check ``cfg`` (``episodes.<dataset>``) against ``store`` and write the fixed validation and
    test episodes.

    Every (split, way, shot) gets its own seeded stream, so adding a setting never changes the
    episodes of another.
    """
    shapes = {split: split_shape(dataset, split, store) for split in cfg.splits}
    check_settings(dataset, cfg, shapes)
    sets = {}
    for split, settings in cfg.splits.items():
        for way in settings.ways:
            for shot in settings.shots:
                rng = episode_rng(cfg.seed, split, way, shot)
                sets[(split, way, shot)] = sample_episodes(rng, settings.episodes, *shapes[split], way, shot, cfg.query)
    write_episodes(out_path, sets, {"dataset": dataset, "seed": cfg.seed, "query": cfg.query})
    return sets
