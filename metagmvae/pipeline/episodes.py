"""The `episodes` stage: the fixed validation and test episodes of one dataset."""

from __future__ import annotations

from pathlib import Path

from metagmvae.config import Checker, non_negative, positive, positive_ints, section
from metagmvae.data.episodes import EpisodeSet, episode_rng, sample_episodes, write_episodes
from metagmvae.data.stores import split_shape


def run(dataset: str, params: dict, store: Path, out_path: Path) -> dict[tuple[str, int, int], EpisodeSet]:
    """Validate ``episodes.<dataset>`` and write the fixed validation and test episodes.

    Every (split, way, shot) gets its own seeded stream, so adding a setting never changes the
    episodes of another.
    """
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
    sets = {}
    for split, (n, ways, shots) in splits.items():
        n_classes, n_instances = split_shape(dataset, split, store)
        for way in ways:
            for shot in shots:
                try:
                    rng = episode_rng(seed, split, way, shot)
                    sets[(split, way, shot)] = sample_episodes(rng, n, n_classes, n_instances, way, shot, query)
                except ValueError as exc:
                    raise ValueError(f"episodes.{dataset}.{split} ({way}-way {shot}-shot): {exc}") from exc
    write_episodes(out_path, sets, {"dataset": dataset, "seed": seed, "query": query})
    return sets
