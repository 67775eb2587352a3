"""The `augment` stage: Omniglot split, resize and rotations into one HDF5 file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from metagmvae.data import omniglot
from metagmvae.runtime.config import NonNegativeInt, Section, SplitCounts
from metagmvae.runtime.io import write_json


class AugmentConfig(Section):
    """The ``augment.omniglot`` section."""

    split_seed: NonNegativeInt  # numpy RandomState(seed).permutation over the sorted characters
    split: SplitCounts  # train / val / test character counts (the permutation is cut in this order)
    image_size: Annotated[int, Field(ge=4, le=105)]  # side of the resized images (the PNGs are 105)
    resize_filter: Literal[tuple(omniglot.RESIZE_FILTERS)]


def run(cfg: AugmentConfig, raw_dir: Path, store_path: Path, split_path: Path) -> None:
    """Write the store ``store_path`` and the character names of each split to ``split_path``
    from the archives in ``raw_dir``."""
    archives = sorted(raw_dir.glob("*.zip"))
    if not archives:
        raise FileNotFoundError(f"{raw_dir}: no .zip archives (run the download stage first)")
    split = omniglot.build_dataset(
        archives, store_path, cfg.split.model_dump(), cfg.split_seed, cfg.image_size, cfg.resize_filter
    )
    write_json(split_path, {"seed": cfg.split_seed, "characters": split})
