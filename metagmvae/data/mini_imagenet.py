"""Mini-ImageNet (Ravi & Larochelle split): reading either source form, verifying, one HDF5 of JPEGs.

Two source forms are accepted:

* **packed** (the mirror): ``index.csv`` (``split,filename,label,shard,offset,length,...``),
  ``<split>-<k>.bin`` shards of back-to-back JPEG files, the split CSVs and ``SHA256SUMS``;
* **folder**: the split CSVs (``filename,label``) beside an ``images/`` folder of JPEGs (the
  form most users already have); ``images/`` may also be the folder itself.

Both become ``images.h5`` (format ``metagmvae.jpegs.v1``): per split, the JPEG bytes of every
image in CSV order (class-major), the file names and the class of each image. The bytes are
kept as they are (no re-encoding); decoding happens in the stages that need pixels.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from metagmvae.data import hdf5
from metagmvae.runtime.io import sha256_file
from metagmvae.runtime.progress import progress as progress_bar
from metagmvae.schema.data import IMAGE_SIZE

FORMAT = "metagmvae.jpegs.v1"
SPLITS = ("train", "val", "test")


class SourceDataError(ValueError):
    """A Mini-ImageNet source is incomplete, inconsistent or holds a broken image."""


@dataclass(frozen=True)
class Split:
    """One split in CSV order: file names, class names (one per image) and JPEG bytes."""

    filenames: list[str]
    labels: list[str]
    jpegs: list[bytes]

    @property
    def classes(self) -> list[str]:
        """Class names in order of first appearance."""
        return list(dict.fromkeys(self.labels))


def _read_split_csv(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise SourceDataError(f"{path}: split file not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
            raise SourceDataError(f"{path}: expected the columns filename,label; found {reader.fieldnames}")
        return [(row["filename"], row["label"]) for row in reader]


def plain_name(name: str, where: str | Path) -> str:
    """``name`` if it is a bare file name; refuse anything that could reach outside the folder
    (``..``, absolute paths, sub-folders, backslashes)."""
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise SourceDataError(f"{where}: refusing the path {name!r} (files must sit in the source folder)")
    return name


def _check_sums(folder: Path) -> set[str]:
    """Verify every file ``SHA256SUMS`` lists; returns their names."""
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise SourceDataError(f"{sums}: not found (the packed form is verified against it)")
    listed: set[str] = set()
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        path = folder / plain_name(name.strip().lstrip("*"), sums)
        if not path.is_file():
            raise SourceDataError(f"{path}: listed in SHA256SUMS but missing")
        if sha256_file(path) != digest:
            raise SourceDataError(f"{path}: SHA-256 does not match SHA256SUMS (truncated or modified)")
        listed.add(path.name)
    return listed


def read_packed(folder: Path) -> dict[str, Split]:
    """Read the packed form: shards addressed by ``index.csv``, rows checked against the split
    CSVs. Every file is verified against ``SHA256SUMS`` first."""
    listed = _check_sums(folder)
    with open(folder / "index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    shards: dict[str, bytes] = {}
    out = {}
    for split in SPLITS:
        expected = _read_split_csv(folder / f"{split}.csv")
        rows = [r for r in index if r["split"] == split]
        names = [(r["filename"], r["label"]) for r in rows]
        if names != expected:
            missing = sorted({n for n, _ in expected} - {n for n, _ in names})[:5]
            unknown = sorted({n for n, _ in names} - {n for n, _ in expected})[:5]
            raise SourceDataError(
                f"{folder / 'index.csv'}: split {split!r} does not list the images of {split}.csv in order "
                f"(missing {missing}, not in the CSV {unknown})"
            )
        jpegs = []
        for r in rows:
            if r["shard"] not in shards:
                if r["shard"] not in listed:
                    raise SourceDataError(f"{folder / 'index.csv'}: shard {r['shard']!r} is not listed in SHA256SUMS")
                shards[r["shard"]] = (folder / r["shard"]).read_bytes()
            start, length = int(r["offset"]), int(r["length"])
            blob = shards[r["shard"]][start : start + length]
            if len(blob) != length:
                raise SourceDataError(f"{folder / r['shard']}: image {r['filename']} lies past the end of the shard")
            jpegs.append(blob)
        out[split] = Split([n for n, _ in names], [lab for _, lab in names], jpegs)
    return out


def fetch_packed(url: str, folder: Path, timeout: float) -> Path:
    """Download the packed form from ``url`` (``SHA256SUMS`` first, then every file it lists)
    into ``folder``; :func:`read_packed` verifies the copies."""
    from metagmvae.data.sources import copy_from

    folder.mkdir(parents=True, exist_ok=True)
    copy_from(url, "SHA256SUMS", folder / "SHA256SUMS", timeout)
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            name = plain_name(line.split(maxsplit=1)[1].strip().lstrip("*"), f"{url}/SHA256SUMS")
            copy_from(url, name, folder / name, timeout)
    return folder


def read_folder(folder: Path) -> dict[str, Split]:
    """Read the folder form: ``<split>.csv`` and the JPEGs they name in ``images/`` (or beside them)."""
    images = folder / "images" if (folder / "images").is_dir() else folder
    out = {}
    for split in SPLITS:
        rows = _read_split_csv(folder / f"{split}.csv")
        jpegs = []
        for name, _ in rows:
            path = images / plain_name(name, folder / f"{split}.csv")
            if not path.is_file():
                raise SourceDataError(f"{path}: image named in {split}.csv is missing")
            jpegs.append(path.read_bytes())
        out[split] = Split([n for n, _ in rows], [lab for _, lab in rows], jpegs)
    return out


def read_source(folder: Path) -> dict[str, Split]:
    """Read whichever form ``folder`` holds (packed if it has ``index.csv``)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: source folder not found")
    return read_packed(folder) if (folder / "index.csv").is_file() else read_folder(folder)


def verify(splits: dict[str, Split], classes: dict[str, int], per_class: int, progress: bool = True) -> None:
    """Check class counts, images per class, class-major order, disjoint classes, and that every
    image fully decodes at 84x84. Raises :class:`SourceDataError` naming the split, class or file."""
    seen: dict[str, str] = {}
    for split, data in splits.items():
        names = data.classes
        if len(names) != classes[split]:
            raise SourceDataError(f"split {split!r}: {len(names)} classes, expected {classes[split]}")
        for name in names:
            if name in seen:
                raise SourceDataError(f"class {name} is in both {seen[name]!r} and {split!r}")
            seen[name] = split
        counts = {name: data.labels.count(name) for name in names}
        for name, count in counts.items():
            if count != per_class:
                raise SourceDataError(f"split {split!r}: class {name} has {count} images, expected {per_class}")
        if data.labels != [name for name in names for _ in range(per_class)]:
            raise SourceDataError(f"split {split!r}: images are not grouped by class (class-major) in CSV order")
        for filename, blob in progress_bar(
            zip(data.filenames, data.jpegs), total=len(data.jpegs), desc=f"verify {split}", disable=not progress
        ):
            check_image(filename, blob)


def check_image(filename: str, blob: bytes) -> None:
    """Fully decode one JPEG and check its size."""
    try:
        with Image.open(io.BytesIO(blob)) as img:
            img.load()
            size = img.size
    except Exception as exc:  # PIL raises several types for broken data
        raise SourceDataError(f"{filename}: image does not decode ({exc})") from exc
    if size != (IMAGE_SIZE, IMAGE_SIZE):
        raise SourceDataError(f"{filename}: image is {size[0]}x{size[1]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")


def write_images(path: Path, splits: dict[str, Split]) -> None:
    """Write the JPEG store: per split ``jpeg`` (variable-length bytes), ``filenames``,
    ``label`` (int class index per image) and ``class_names``."""
    with hdf5.create(path, FORMAT, {"image_size": IMAGE_SIZE}) as f:
        for split, data in splits.items():
            g = f.create_group(split)
            classes = data.classes
            index = {name: i for i, name in enumerate(classes)}
            blobs = np.empty(len(data.jpegs), dtype=object)
            blobs[:] = [np.frombuffer(b, dtype=np.uint8) for b in data.jpegs]
            g.create_dataset("jpeg", data=blobs, dtype=h5py.vlen_dtype(np.uint8), track_times=False)
            hdf5.write_strings(g, "filenames", data.filenames)
            hdf5.write_strings(g, "class_names", classes)
            hdf5.write_array(g, "label", np.array([index[lab] for lab in data.labels], dtype=np.int64))


@dataclass(frozen=True)
class ImageSplit:
    """Decoded images of one split: ``images`` uint8 ``[C, n, 3, 84, 84]``, names alongside."""

    images: torch.Tensor
    class_names: list[str]
    filenames: list[list[str]]


def _decode(blob: np.ndarray) -> np.ndarray:
    with Image.open(io.BytesIO(blob.tobytes())) as img:
        return np.asarray(img.convert("RGB"))


def load_images(path: Path, split: str, per_class: int | None = None) -> ImageSplit:
    """Decode the first ``per_class`` images of every class of ``split`` (all when ``None``)."""
    with hdf5.open_store(path, FORMAT) as f:
        if split not in f:
            raise hdf5.StoreError(f"{path}: has no split {split!r} (found {sorted(f)})")
        g = f[split]
        classes = hdf5.read_strings(g["class_names"])
        n_total = len(g["label"]) // len(classes)
        n = n_total if per_class is None else min(per_class, n_total)
        rows = np.concatenate([np.arange(c * n_total, c * n_total + n) for c in range(len(classes))])
        names = hdf5.read_strings(g["filenames"])
        stored = g["jpeg"][()]  # one read of the split's bytes; h5py is slow row by row
        images = np.stack([_decode(stored[i]) for i in rows])  # [N, 84, 84, 3]
    images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return ImageSplit(
        images=images.view(len(classes), n, *images.shape[1:]),
        class_names=classes,
        filenames=[[names[i] for i in rows[c * n : (c + 1) * n]] for c in range(len(classes))],
    )
