"""The `episodes` stage: the fixed validation and test episodes of one dataset."""

from __future__ import annotations

from pathlib import Path

from metagmvae.data.episodes import EpisodeSet, episode_rng, sample_episodes, write_episodes
from metagmvae.data.stores import split_shape
from metagmvae.schema.data import EpisodesConfig, check_settings


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
