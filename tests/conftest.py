"""Shared fixtures: tiny Omniglot archives built from the mirror, with the official layout."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
# The tiny archives are cut from the Omniglot mirror beside the checkout; without it (or with
# METAGMVAE_TEST_MIRROR pointing elsewhere) they are drawn synthetically with the same layout.
MIRROR = Path(os.environ.get("METAGMVAE_TEST_MIRROR", REPO.parent / "shared" / "data" / "omniglot")).resolve()
TINY_CHARACTERS = {"images_background.zip": 12, "images_evaluation.zip": 8}  # 20 characters, 80 classes
TINY_SPLIT = {"train": 12, "val": 4, "test": 4}  # 48 / 16 / 16 classes
TINY_TRAINING = {  # overrides of a metatrain section: seconds, not minutes
    "batch": 1,
    "points": 12,
    "samples": 2,
    "steps": 6,
    "val_every": 3,
    "checkpoint_every": 2,
    "log_every": 2,
    "val_samples": 2,
    "episodes_per_call": 2,
    "precision": "fp32",
}


@pytest.fixture(autouse=True, scope="session")
def _no_tracking_into_the_repository():
    """Unit tests never write to the repository's MLflow store (the pipeline test opts back in)."""
    previous = os.environ.get("METAGMVAE_TRACKING")
    os.environ["METAGMVAE_TRACKING"] = "off"
    yield
    if previous is None:
        os.environ.pop("METAGMVAE_TRACKING")
    else:
        os.environ["METAGMVAE_TRACKING"] = previous


def _synthetic_png(character: int, drawer: int) -> bytes:
    """A 105x105 1-bit image: the character's three strokes, jittered per drawer (no mirror)."""
    strokes = np.random.default_rng(character).integers(15, 90, (3, 3, 2))
    jitter = np.random.default_rng(10_000 + 100 * character + drawer).integers(-4, 5, strokes.shape)
    img = Image.new("1", (105, 105), 1)
    draw = ImageDraw.Draw(img)
    for line in strokes + jitter:
        draw.line([tuple(int(v) for v in p) for p in line], fill=0, width=4)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def tiny_members(archive: str, characters: int) -> list[tuple[str, bytes]]:
    """``(name, png bytes)`` of the first ``characters`` characters (4 per alphabet) of an archive."""
    source = MIRROR / archive
    top = archive.removesuffix(".zip")
    if source.exists():
        with zipfile.ZipFile(source) as zf:
            names = sorted(n for n in zf.namelist() if n.endswith(".png"))
            chosen, per_alphabet = [], {}
            for name in names:
                _, alphabet, char, _ = name.split("/")
                keep = per_alphabet.setdefault(alphabet, [])
                if char not in keep and len(keep) < 4 and sum(map(len, per_alphabet.values())) < characters:
                    keep.append(char)
                if char in keep:
                    chosen.append(name)
            return [(n, zf.read(n)) for n in chosen]
    first = 0 if top == "images_background" else 1000
    return [
        (f"{top}/Alphabet_{c // 4}/character{c % 4 + 1:02d}/{first + c:04d}_{d:02d}.png", _synthetic_png(first + c, d))
        for c in range(characters)
        for d in range(1, 21)
    ]


def write_zip(path: Path, members: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory) -> Path:
    """A folder holding tiny ``images_background.zip`` and ``images_evaluation.zip``."""
    folder = tmp_path_factory.mktemp("tiny_omniglot")
    for archive, characters in TINY_CHARACTERS.items():
        write_zip(folder / archive, tiny_members(archive, characters))
    return folder


@pytest.fixture(scope="session")
def store(tiny_sources, tmp_path_factory) -> Path:
    """The tiny archives through the real `augment` stage: ``omniglot.h5`` (48 / 16 / 16 classes)."""
    from metagmvae.pipeline import augment

    out = tmp_path_factory.mktemp("store")
    raw = out / "raw"
    raw.mkdir()
    for name in TINY_CHARACTERS:
        (raw / name).write_bytes((tiny_sources / name).read_bytes())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"]["omniglot"]["split"] = TINY_SPLIT
    augment.run(params, raw, out)
    return out / "omniglot.h5"
