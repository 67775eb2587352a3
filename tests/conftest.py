"""Shared fixtures: tiny Omniglot archives and a tiny Mini-ImageNet, cut from the mirrors (or
drawn synthetically when the mirrors are absent), with the official layouts.

``tests/unit/`` tests one module at a time in-process; ``tests/integration/`` runs stages, DVC,
an MLflow server, subprocesses and several processes, and its tests carry the ``integration``
marker (``bash scripts/test.sh -m "not integration"`` runs the fast part)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from metagmvae.cli.profile import load_profile, merge
from metagmvae.schema.params import parse_section

REPO = Path(__file__).resolve().parent.parent
INTEGRATION = REPO / "tests" / "integration"
# The tiny archives are cut from the Omniglot mirror beside the checkout; without it (or with
# METAGMVAE_TEST_MIRROR pointing elsewhere) they are drawn synthetically with the same layout.
MIRROR = Path(os.environ.get("METAGMVAE_TEST_MIRROR", REPO.parent / "shared" / "data" / "omniglot")).resolve()
MINI_MIRROR = Path(
    os.environ.get("METAGMVAE_TEST_MINI_MIRROR", REPO.parent / "shared" / "data" / "mini-imagenet")
).resolve()
TINY_MINI_CLASSES = {"train": 5, "val": 5, "test": 5}
TINY_MINI_PER_CLASS = 20
TINY_CHARACTERS = {"images_background.zip": 12, "images_evaluation.zip": 8}  # 20 characters, 80 classes
TINY_SPLIT = {"train": 12, "val": 4, "test": 4}  # 48 / 16 / 16 classes
TINY_TRAINING = {  # overrides of a metatrain section: seconds, not minutes
    "batch": 1,
    "points": 12,
    "samples": 2,
    "samples_decoder": 2,
    "steps": 6,
    "val_every": 3,
    "checkpoint_every": 2,
    "log_every": 2,
    "val_samples": 2,
    "episodes_per_call": 2,
    "precision": "fp32",
}


TINY_RELATED = {  # per related method, the overrides that shrink its quick profile to seconds
    "lasium": {"vae_steps": 4, "batch": 1, "way": 5, "query": 2},
    "leo": {"batch": 2},
    "sib": {"batch": 2, "lr_drop_steps": [2, 3]},
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
    augment.run(parse_section(params, "augment", "omniglot"), raw, out / "omniglot.h5", out / "split.json")
    return out / "omniglot.h5"


# ---------------------------------------------------------------- tiny Mini-ImageNet


def _synthetic_jpeg(label: int, index: int) -> bytes:
    """An 84x84 JPEG: the class's colour with a class-specific bar and per-image noise."""
    rng = np.random.default_rng(1000 * label + index)
    base = np.random.default_rng(label).integers(40, 215, 3)
    img = np.clip(base + rng.normal(0, 25, (84, 84, 3)), 0, 255).astype(np.uint8)
    row = 8 * (label % 9)
    img[row : row + 8] = 255 - base
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def tiny_mini_rows() -> dict[str, list[tuple[str, str, bytes]]]:
    """Per split, ``(filename, class, jpeg bytes)`` of the first TINY_MINI_CLASSES classes and
    their first TINY_MINI_PER_CLASS images, class-major."""
    out: dict[str, list[tuple[str, str, bytes]]] = {}
    if (MINI_MIRROR / "index.csv").is_file():
        with open(MINI_MIRROR / "index.csv", newline="") as f:
            index = list(csv.DictReader(f))
        for split, n_classes in TINY_MINI_CLASSES.items():
            rows, taken = [], {}
            for r in index:
                if r["split"] != split:
                    continue
                if r["label"] not in taken and len(taken) == n_classes:
                    break
                taken.setdefault(r["label"], 0)
                if taken[r["label"]] < TINY_MINI_PER_CLASS:
                    taken[r["label"]] += 1
                    with open(MINI_MIRROR / r["shard"], "rb") as shard:
                        shard.seek(int(r["offset"]))
                        rows.append((r["filename"], r["label"], shard.read(int(r["length"]))))
            out[split] = rows
        return out
    first = 0
    for split, n_classes in TINY_MINI_CLASSES.items():
        out[split] = [
            (f"n{first + c:08d}{i:08d}.jpg", f"n{first + c:08d}", _synthetic_jpeg(first + c, i))
            for c in range(n_classes)
            for i in range(TINY_MINI_PER_CLASS)
        ]
        first += n_classes
    return out


def _write_split_csvs(folder: Path, rows: dict[str, list[tuple[str, str, bytes]]]) -> None:
    for split, items in rows.items():
        with open(folder / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "label"])
            writer.writerows((name, label) for name, label, _ in items)


def write_mini_packed(folder: Path, rows: dict[str, list[tuple[str, str, bytes]]]) -> Path:
    """The packed form: one shard per split, ``index.csv``, split CSVs and ``SHA256SUMS``."""
    folder.mkdir(parents=True, exist_ok=True)
    index = [["split", "filename", "label", "shard", "offset", "length"]]
    for split, items in rows.items():
        offset, shard = 0, f"{split}-0.bin"
        with open(folder / shard, "wb") as f:
            for name, label, blob in items:
                f.write(blob)
                index.append([split, name, label, shard, offset, len(blob)])
                offset += len(blob)
    with open(folder / "index.csv", "w", newline="") as f:
        csv.writer(f).writerows(index)
    _write_split_csvs(folder, rows)
    names = ["index.csv", *(f"{s}.csv" for s in rows), *(f"{s}-0.bin" for s in rows)]
    sums = [f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}" for n in names]
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return folder


def write_mini_folder(folder: Path, rows: dict[str, list[tuple[str, str, bytes]]]) -> Path:
    """The common form: split CSVs beside an ``images/`` folder of JPEGs."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for items in rows.values():
        for name, _, blob in items:
            (folder / "images" / name).write_bytes(blob)
    _write_split_csvs(folder, rows)
    return folder


@pytest.fixture(scope="session")
def tiny_mini_rows_cached() -> dict[str, list[tuple[str, str, bytes]]]:
    return tiny_mini_rows()


@pytest.fixture(scope="session")
def tiny_mini_packed(tiny_mini_rows_cached, tmp_path_factory) -> Path:
    """A tiny Mini-ImageNet in the packed form (5 / 5 / 5 classes x 20 images)."""
    return write_mini_packed(tmp_path_factory.mktemp("tiny_mini") / "packed", tiny_mini_rows_cached)


def tiny_mini_params(params: dict, source: Path) -> dict:
    """``params`` with the Mini-ImageNet sections shrunk to the tiny data: seconds, not minutes."""
    params["download"]["mini_imagenet"].update(
        sources=[str(source)], classes=TINY_MINI_CLASSES, images_per_class=TINY_MINI_PER_CLASS
    )
    params["pretrain"]["mini_imagenet"].update(
        train_per_class=TINY_MINI_PER_CLASS, epochs=2, batch=50, warmup_epochs=1, precision="fp32"
    )
    params["extract"]["mini_imagenet"].update(
        per_class=dict.fromkeys(TINY_MINI_CLASSES, TINY_MINI_PER_CLASS), batch=32, precision="fp32"
    )
    params["episodes"]["mini_imagenet"].update(
        query=5, val={"episodes": 8, "ways": [5], "shots": [1]}, test={"episodes": 20, "ways": [5], "shots": [1, 5]}
    )
    params["metatrain"]["mini_imagenet_5way"].update(TINY_TRAINING, batch=2, points=5, val_shots=[1])
    params["evaluate"]["mini_imagenet"].update(
        models={"mini_imagenet_5way": [1, 5]}, test_samples=2, episodes_per_call=10
    )
    return params


@pytest.fixture(scope="session")
def mini_store(tiny_mini_packed, tmp_path_factory) -> Path:
    """The tiny Mini-ImageNet through the real download, pretrain and extract stages: a folder
    with ``raw/images.h5``, ``simclr/simclr.pt`` and the feature store ``mini_imagenet.h5``."""
    from metagmvae.pipeline import download, extract, pretrain

    out = tmp_path_factory.mktemp("mini_store")
    params = tiny_mini_params(yaml.safe_load((REPO / "params.yaml").read_text()), tiny_mini_packed)
    download.run(parse_section(params, "download", "mini_imagenet"), out / "raw", REPO)
    pretrain.run(
        "mini_imagenet",
        parse_section(params, "pretrain", "mini_imagenet"),
        out / "raw" / "images.h5",
        out / "simclr",
        out / "simclr.json",
        out / "resume",
    )
    extract.run(
        "mini_imagenet",
        parse_section(params, "extract", "mini_imagenet"),
        out / "raw" / "images.h5",
        out / "simclr" / "simclr.pt",
        out / "mini_imagenet.h5",
        out / "features.json",
    )
    return out


# ---------------------------------------------------------------- the whole pipeline


def tiny_pipeline_params(sources: Path, mini_source: Path) -> dict:
    """The committed params.yaml, shrunk: 20 characters, 5- and 10-way models, a few steps;
    Mini-ImageNet with 5 classes per split and 20 images per class."""
    from metagmvae.data import omniglot

    params = tiny_mini_params(yaml.safe_load((REPO / "params.yaml").read_text()), mini_source)
    dl = params["download"]["omniglot"]
    dl["sources"] = [str(sources)]
    for name, chars in TINY_CHARACTERS.items():
        digest = omniglot.verify_archive(sources / name).content_sha256
        dl["archives"][name] = {"characters": chars, "content_sha256": digest}
    params["augment"]["omniglot"]["split"] = TINY_SPLIT
    params["episodes"]["omniglot"].update(
        val={"episodes": 8, "ways": [5, 10], "shots": [1, 5]}, test={"episodes": 20, "ways": [5, 10], "shots": [1, 5]}
    )
    template = params["metatrain"]["omniglot_5way"]
    tiny = dict(template, **TINY_TRAINING)
    params["metatrain"] = {
        "omniglot_5way": dict(tiny, way=5),
        "omniglot_10way": dict(tiny, way=10),
        "mini_imagenet_5way": params["metatrain"]["mini_imagenet_5way"],
    }
    params["evaluate"]["omniglot"].update(
        models={"omniglot_5way": [1, 5], "omniglot_10way": [1, 5]},
        cross_way={"omniglot_5way": [10], "omniglot_10way": [5]},  # the tiny test split has 16 classes
        test_samples=2,
        episodes_per_call=10,
        precision="fp32",
    )
    for run in params["related"].values():  # a few steps each, tested on the tiny test episodes
        shots = [s for s in run["test_shots"] if s in (1, 5)]  # a run's own shots, as far as the tiny split has them
        run.update(steps=4, val_every=2, log_every=2, test_ways=[5], test_shots=shots, episodes_per_call=10)
        run.update({key: value for key, value in TINY_RELATED[run["method"]].items() if key in run})
    return params


@pytest.fixture(scope="session")
def pipeline_params(tiny_sources, tiny_mini_packed) -> dict:
    """:func:`tiny_pipeline_params` for the tiny archives (a fresh copy per use: ``copy.deepcopy``)."""
    return tiny_pipeline_params(tiny_sources, tiny_mini_packed)


# ---------------------------------------------------------------- related methods


def related_section(name: str, profile: str | None = None, **overrides) -> dict:
    """The raw ``related.<name>`` section of params.yaml (``profile``'s overrides applied), with
    ``overrides``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if profile:
        params = merge(params, load_profile(profile))
    return params["related"][name] | overrides


def related_config(name: str, profile: str | None = None, **overrides):
    """The method's own configuration (its ``Config``) of :func:`related_section`, parsed as the
    stage parses it: errors are located under ``related.<name>``."""
    section = related_section(name, profile, **overrides)
    return parse_section({"related": {name: section}}, "related", name).method_config()


# ---------------------------------------------------------------- dvc.yaml


def expanded_stages(params: dict) -> dict[str, dict]:
    """dvc.yaml's stages with every ``foreach`` expanded (``name@key``) over ``params`` and
    ``${...}`` filled in: ``{name: {"cmd": ..., "deps": [...]}}``."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    stages = {}
    for name, stage in spec.items():
        if "foreach" not in stage:
            stages[name] = stage
            continue
        items = stage["foreach"]
        if isinstance(items, str):  # ${section} of params.yaml
            items = params[items.strip("${}")]
        pairs = items.items() if isinstance(items, dict) else ((item, item) for item in items)
        for key, item in pairs:

            def fill(text: str, key=key, item=item) -> str:
                def value(match: re.Match) -> str:
                    ref = match.group(1)
                    if ref == "key":
                        return str(key)
                    if ref == "item":
                        return str(item)
                    return str(item[ref.removeprefix("item.")])

                return re.sub(r"\$\{([^}]+)\}", value, text)

            body = stage["do"]
            stages[f"{name}@{key}"] = {"cmd": fill(body["cmd"]), "deps": [fill(d) for d in body["deps"]]}
    return stages


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under ``tests/integration/`` as ``integration``."""
    for item in items:
        if INTEGRATION in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
