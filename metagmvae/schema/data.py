"""The data sections: ``download``, ``augment``, ``episodes``, ``extract``, and the dataset facts
their checks need."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from metagmvae.runtime.config import (
    ConfigError,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PositiveInts,
    Section,
    SplitCounts,
)

DATASETS = ("omniglot", "mini_imagenet")  # the datasets a store can be built for (metagmvae.data.stores)
RESIZE_FILTERS = ("nearest", "box", "bilinear", "lanczos")  # Pillow filters of the Omniglot resize

IMAGES_PER_CHARACTER = 20


ROTATIONS = 4  # 0, 90, 180 and 270 degrees, each a class of its own


IMAGE_SIZE = 84


def check_episode_shape(n_classes: int, n_instances: int, way: int, shot: int, query: int) -> None:
    """Raise ``ValueError`` naming the problem when episodes of this shape cannot be drawn."""
    if min(way, shot, query) < 1:
        raise ValueError(f"way, shot and query must be >= 1, got way={way}, shot={shot}, query={query}")
    if way > n_classes:
        raise ValueError(f"way={way} is larger than the {n_classes} classes available")
    if shot + query > n_instances:
        raise ValueError(
            f"shot + query = {shot} + {query} = {shot + query} is larger than the {n_instances} instances per class"
        )


Sources = Annotated[list[str], Field(min_length=1)]  # URLs or folders, tried in order


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Archive(Section):
    """What one Omniglot archive must contain."""

    characters: PositiveInt  # character folders (x 20 PNGs each)
    content_sha256: Sha256  # digest over the sorted member names and bytes (any repacking)


class OmniglotDownload(Section):
    """The ``download.omniglot`` section."""

    sources: Sources
    timeout_seconds: PositiveFloat
    archives: Annotated[dict[str, Archive], Field(min_length=1)]  # file name -> expected contents


class MiniImagenetDownload(Section):
    """The ``download.mini_imagenet`` section."""

    sources: Sources
    timeout_seconds: PositiveFloat
    classes: SplitCounts
    images_per_class: PositiveInt


class AugmentConfig(Section):
    """The ``augment.omniglot`` section."""

    split_seed: NonNegativeInt  # numpy RandomState(seed).permutation over the sorted characters
    split: SplitCounts  # train / val / test character counts (the permutation is cut in this order)
    image_size: Annotated[int, Field(ge=4, le=105)]  # side of the resized images (the PNGs are 105)
    resize_filter: Literal[RESIZE_FILTERS]


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
