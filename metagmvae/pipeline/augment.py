"""The `augment` stage: Omniglot split, resize and rotations into one HDF5 file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metagmvae.config import Checker, counts_per_split, non_negative, one_of, section
from metagmvae.data import omniglot
from metagmvae.io import write_json

SPLIT_ORDER = ("train", "val", "test")  # the permutation is cut in this order, whatever the YAML's


def _ordered_split(sizes: dict[str, int]) -> dict[str, int]:
    return {name: sizes[name] for name in SPLIT_ORDER}


@dataclass(frozen=True)
class AugmentConfig:
    """The ``augment.omniglot`` section."""

    split_seed: int
    split: dict[str, int]  # train / val / test character counts
    image_size: int
    resize_filter: str


def augment_config(params: dict) -> AugmentConfig:
    """Parse and validate ``augment.omniglot``."""
    check = Checker(section(params, "augment", "omniglot"), "augment.omniglot")
    cfg = AugmentConfig(
        split_seed=check.get("split_seed", int, non_negative),
        split=_ordered_split(check.get("split", dict, counts_per_split(SPLIT_ORDER, "character counts"))),
        image_size=check.get("image_size", int, lambda v: None if 4 <= v <= 105 else "must be in [4, 105]"),
        resize_filter=check.get("resize_filter", str, one_of(*omniglot.RESIZE_FILTERS)),
    )
    check.done()
    return cfg


def run(params: dict, raw_dir: Path, out_dir: Path) -> None:
    """Validate ``augment.omniglot``, then write ``omniglot.h5`` and ``split.json`` in ``out_dir``."""
    cfg = augment_config(params)
    archives = sorted(raw_dir.glob("*.zip"))
    if not archives:
        raise FileNotFoundError(f"{raw_dir}: no .zip archives (run the download stage first)")
    split = omniglot.build_dataset(
        archives, out_dir / "omniglot.h5", cfg.split, cfg.split_seed, cfg.image_size, cfg.resize_filter
    )
    write_json(out_dir / "split.json", {"seed": cfg.split_seed, "characters": split})
