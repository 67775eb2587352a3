"""The `augment` stage: Omniglot split, resize and rotations into one HDF5 file."""

from __future__ import annotations

from pathlib import Path

from metagmvae.data import omniglot
from metagmvae.runtime.io import write_json
from metagmvae.schema.data import AugmentConfig


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
