"""The `augment` stage: Omniglot split, resize and rotations into one HDF5 file."""

from __future__ import annotations

from pathlib import Path

from metagmvae.config import Checker, non_negative, one_of, section
from metagmvae.data import omniglot
from metagmvae.io import write_json


def run(params: dict, raw_dir: Path, out_dir: Path) -> None:
    """Validate ``augment.omniglot``, then write ``omniglot.h5`` and ``split.json`` in ``out_dir``."""
    check = Checker(section(params, "augment", "omniglot"), "augment.omniglot")
    seed = check.get("split_seed", int, non_negative)
    sizes = check.get(
        "split",
        dict,
        lambda v: (
            None
            if list(v) == ["train", "val", "test"] and all(isinstance(n, int) and n > 0 for n in v.values())
            else "must map train, val, test (in that order) to sizes > 0"
        ),
    )
    size = check.get("image_size", int, lambda v: None if 4 <= v <= 105 else "must be in [4, 105]")
    resize_filter = check.get("resize_filter", str, one_of(*omniglot.RESIZE_FILTERS))
    check.done()
    archives = sorted(raw_dir.glob("*.zip"))
    if not archives:
        raise FileNotFoundError(f"{raw_dir}: no .zip archives (run the download stage first)")
    split = omniglot.build_dataset(archives, out_dir / "omniglot.h5", sizes, seed, size, resize_filter)
    write_json(out_dir / "split.json", {"seed": seed, "characters": split})
